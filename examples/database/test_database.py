"""End to end against a real PostgreSQL (Debian's `postgresql`, started here on a free port).

Each exactly-once pattern is checked with a crash right after the database write, before Restate recorded
the step: the step runs again, and the credits must still change once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from examples._harness import DeployFn, Deployment
from examples.database.db import SCHEMA
from pyrestate.testing import json_of
from pyrestate.testing.postgres import find_postgres_bin, postgres_server

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.skipif(find_postgres_bin() is None,
                                reason="PostgreSQL is not installed (apt-get install postgresql)")


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with postgres_server(fsync=False, settings=["max_prepared_transactions=10"]) as pg:
        url = pg.create_database("exampledb")
        with psycopg.connect(url) as conn:
            conn.execute(SCHEMA)
            conn.execute("INSERT INTO users (user_id, name) VALUES ('A', 'Alice'), ('B', 'Bob')")
        yield url


@pytest.fixture(scope="module")
def dep(deploy: DeployFn, database_url: str) -> Deployment:
    return deploy("database", env={"DATABASE_URL": database_url})


def credits(url: str, user_id: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT credits FROM users WHERE user_id = %s", (user_id,)).fetchone()
    assert row is not None
    return int(row[0])


def new_user(dep: Deployment) -> str:
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    json_of(dep.ingress.call("simple", "insert", {"userId": user_id, "name": "Emm", "credits": 1337}))
    return user_id


def test_simple_reads_and_inserts(dep: Deployment, database_url: str) -> None:
    assert json_of(dep.ingress.call("simple", "read", "A"))["name"] == "Alice"
    assert json_of(dep.ingress.call("simple", "durableRead", "B"))["name"] == "Bob"
    dep.arm_crash("after-insert")  # the insert is retried after the crash and stays one row
    user = {"userId": f"C-{uuid.uuid4().hex[:6]}", "name": "Emm", "credits": 1337}
    sent = dep.ingress.send_json("simple", "insert", user)
    dep.restart_after_crash()
    json_of(dep.ingress.attach(sent["invocationId"]))
    assert credits(database_url, user["userId"]) == 1337


@pytest.mark.parametrize(("service", "handler", "crash"), [
    ("keyed", "updateConditional", "after-update"),
    ("idempotency", "update", "after-update"),
    ("twoPhaseCommit", "update", "after-prepare"),
    ("twoPhaseCommit", "update", "after-commit"),
])
def test_updates_apply_exactly_once_across_a_crash(
    dep: Deployment, database_url: str, service: str, handler: str, crash: str
) -> None:
    user_id = new_user(dep)
    dep.arm_crash(crash)
    if service == "keyed":
        sent = dep.ingress.send_json(service, handler, 100, key=user_id)
    else:
        sent = dep.ingress.send_json(service, handler, {"userId": user_id, "addCredits": 100})
    dep.restart_after_crash()
    json_of(dep.ingress.attach(sent["invocationId"]))
    assert credits(database_url, user_id) == 1437
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone() == (0,)
