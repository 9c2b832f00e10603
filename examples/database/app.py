"""Database interaction patterns: plain and durable reads and writes, and three exactly-once updates.

Every write runs inside `ctx.run`, which is at-least-once: a crash after the database committed but
before Restate recorded the step runs the step again. The three update services each make that retry a
no-op in a different way: a version check, an idempotency key table, a two-phase commit.
"""

from __future__ import annotations

from typing import Any

import pyrestate.sdk as restate
from examples.database import db
from pyrestate.sdk import Context, ObjectContext, TerminalError

simple = restate.Service("simple")
keyed = restate.VirtualObject("keyed")
idempotency = restate.Service("idempotency")
two_phase_commit = restate.Service("twoPhaseCommit")


@simple.handler()
async def read(ctx: Context, user_id: str) -> dict[str, Any] | None:
    # A plain read: the value may differ when the handler is retried.
    return await db.read_user(user_id)


@simple.handler("durableRead")
async def durable_read(ctx: Context, user_id: str) -> dict[str, Any] | None:
    # Journaled: a retry sees the value read the first time.
    return await ctx.run("read user", lambda: db.read_user(user_id))


@simple.handler()
async def insert(ctx: Context, user: dict[str, Any]) -> None:
    await ctx.run("insert user", lambda: db.insert_user(user))


@keyed.handler("updateConditional")
async def update_conditional(ctx: ObjectContext, add_credits: int) -> None:
    # One writer per user key at a time (virtual object); the version read is journaled, so the update
    # can only ever apply once against it.
    user = await ctx.run("read user", lambda: db.read_user(ctx.key()))
    if user is None:
        raise TerminalError(f"unknown user {ctx.key()}")
    version = user["version"]
    await ctx.run("update", lambda: db.add_credits_if_version(ctx.key(), add_credits, version))


@idempotency.handler()
async def update(ctx: Context, req: dict[str, Any]) -> None:
    # The invocation id is stable across retries: it is the idempotency key of the database write.
    key = ctx.request().id
    await ctx.run("update", lambda: db.add_credits_idempotently(key, req["userId"], req["addCredits"]))


@two_phase_commit.handler("update")
async def update_2pc(ctx: Context, req: dict[str, Any]) -> None:
    txn_id = f"txn-{ctx.request().id}"
    await ctx.run("prepare", lambda: db.prepare_add_credits(txn_id, req["userId"], req["addCredits"]))
    # Other journaled work could go here; whatever happens, the prepared transaction is finished.
    await ctx.run("commit", lambda: db.finish_prepared(txn_id, commit=True))


app = restate.app([simple, keyed, idempotency, two_phase_commit])
