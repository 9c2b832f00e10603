"""The database side of the example: one PostgreSQL connection per operation (DATABASE_URL)."""

from __future__ import annotations

import os
from typing import Any

import psycopg

from examples.effects import maybe_crash

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    credits INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS user_idempotency (id TEXT PRIMARY KEY);
"""


def url() -> str:
    return os.environ.get("DATABASE_URL", "postgresql://restatedb:restatedb@localhost:5432/exampledb")


async def connect() -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url())


async def read_user(user_id: str) -> dict[str, Any] | None:
    async with await connect() as conn:
        cur = await conn.execute("SELECT name, credits, version FROM users WHERE user_id = %s", (user_id,))
        row = await cur.fetchone()
    return None if row is None else {"userId": user_id, "name": row[0], "credits": row[1], "version": row[2]}


async def insert_user(user: dict[str, Any]) -> None:
    # ON CONFLICT DO NOTHING: a retried insert is harmless.
    async with await connect() as conn:
        await conn.execute(
            "INSERT INTO users (user_id, name, address, credits) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (user["userId"], user["name"], user.get("address", ""), user.get("credits", 0)))
    maybe_crash("after-insert")


async def add_credits_if_version(user_id: str, add: int, version: int) -> bool:
    """Applies only against the version read before: a retry after the write finds a newer version."""
    async with await connect() as conn:
        cur = await conn.execute(
            "UPDATE users SET credits = credits + %s, version = version + 1"
            " WHERE user_id = %s AND version = %s",
            (add, user_id, version))
        applied = cur.rowcount == 1
    maybe_crash("after-update")
    return applied


async def add_credits_idempotently(idempotency_key: str, user_id: str, add: int) -> bool:
    """The key and the update commit in one transaction: a retry finds the key and changes nothing."""
    async with await connect() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO user_idempotency (id) VALUES (%s) ON CONFLICT DO NOTHING", (idempotency_key,))
        applied = cur.rowcount == 1
        if applied:
            await conn.execute("UPDATE users SET credits = credits + %s WHERE user_id = %s", (add, user_id))
    maybe_crash("after-update")
    return applied


async def prepare_add_credits(txn_id: str, user_id: str, add: int) -> None:
    """Phase one: the update is prepared (durable in PostgreSQL, not yet visible) under `txn_id`."""
    async with await connect() as conn:
        await conn.set_autocommit(True)
        cur = await conn.execute("SELECT 1 FROM pg_prepared_xacts WHERE gid = %s", (txn_id,))
        if await cur.fetchone() is None:
            await conn.execute("BEGIN")
            await conn.execute("UPDATE users SET credits = credits + %s WHERE user_id = %s", (add, user_id))
            await conn.execute(psycopg.sql.SQL("PREPARE TRANSACTION {}").format(psycopg.sql.Literal(txn_id)))
    maybe_crash("after-prepare")


async def finish_prepared(txn_id: str, commit: bool) -> None:
    """Phase two: commit (or roll back) the prepared transaction if it is still pending."""
    verb = "COMMIT PREPARED {}" if commit else "ROLLBACK PREPARED {}"
    async with await connect() as conn:
        await conn.set_autocommit(True)
        cur = await conn.execute("SELECT 1 FROM pg_prepared_xacts WHERE gid = %s", (txn_id,))
        if await cur.fetchone() is not None:
            await conn.execute(psycopg.sql.SQL(verb).format(psycopg.sql.Literal(txn_id)))
    maybe_crash("after-commit")
