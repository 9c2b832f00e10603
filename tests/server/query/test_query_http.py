"""`POST /query` through the admin app: every statement the official CLI sends, formats, errors, bounds."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pyarrow as pa
import pytest
from store import NOW, Fixture

from pyrestate.server.admin import AdminApp
from pyrestate.server.core_api import ServerCore
from pyrestate.server.query import QueryLimits, QueryRunner, SqliteSnapshot, run_query

ARROW = "application/vnd.apache.arrow.stream"


class SnapshotCore:
    """Just the part of the engine `/query` uses."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def query_snapshot(self) -> SqliteSnapshot:
        return SqliteSnapshot(self.path, now_ms=NOW)


@pytest.fixture
async def client(store: Fixture) -> AsyncIterator[httpx.AsyncClient]:
    app = AdminApp(cast(ServerCore, SnapshotCore(store.path)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as c:
        yield c
    if app._query_runner is not None:
        app._query_runner.close()


def cli_statements(captures: Path) -> list[tuple[str, str]]:
    """(accept, sql) of every `/query` request in the CLI capture, deduplicated."""
    text = (captures / "cli-admin-requests.txt").read_text()
    out: list[tuple[str, str]] = []
    for block in text.split("\n=== ")[1:]:
        if "/query" not in block.split("\n", 1)[0]:
            continue
        accept = re.search(r"^> Accept: (.*)$", block, re.M)
        sql = block.split("> body.query:\n", 1)[1].split("\n< ", 1)[0]
        item = (accept.group(1) if accept else "*/*", sql)
        if item not in out:
            out.append(item)
    return out


async def test_every_cli_statement_runs(client: httpx.AsyncClient, captures: Path, store: Fixture) -> None:
    statements = cli_statements(captures)
    assert len(statements) >= 14
    for accept, sql in statements:
        r = await client.post("/v4/query", json={"query": sql}, headers={"accept": accept})
        assert r.status_code == 200, (sql, r.text)
        if accept == "application/json":
            assert r.headers["content-type"] == "application/json"
            assert isinstance(r.json()["rows"], list)
        else:
            assert r.headers["content-type"] == ARROW
            pa.ipc.open_stream(r.content).read_all()


async def _json(client: httpx.AsyncClient, sql: str) -> list[dict[str, Any]]:
    r = await client.post("/v4/query", json={"query": sql}, headers={"accept": "application/json"})
    assert r.status_code == 200, r.text
    return cast(list[dict[str, Any]], r.json()["rows"])


async def _arrow(client: httpx.AsyncClient, sql: str) -> pa.Table:
    r = await client.post("/query", json={"query": sql})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == ARROW
    return pa.ipc.open_stream(r.content).read_all()


async def test_cli_answers(client: httpx.AsyncClient, captures: Path, store: Fixture) -> None:
    ids = store.ids
    count = await _arrow(
        client,
        "SELECT COUNT(1) FROM (SELECT\n *\n FROM sys_invocation inv\n LIMIT 50000\n )\n"
        " WHERE status != 'completed'",
    )
    assert count.schema.field(0).name == "count(Int64(1))" and count.column(0).to_pylist() == [6]
    assert count.schema.field(0).type == pa.int64() and not count.schema.field(0).nullable
    probe = await _arrow(
        client,
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'sys_journal' "
        "AND column_name IN ('version', 'entry_json', 'appended_at')",
    )
    assert probe.to_pylist() == [{"count(*)": 3}]
    listed = [
        r["id"]
        for r in await _json(
            client,
            "SELECT id FROM sys_invocation inv WHERE status != 'completed' "
            "ORDER BY inv.created_at DESC, inv.id LIMIT 100",
        )
    ]
    assert sorted(listed) == sorted(
        ids[k] for k in ("running", "backing_off", "suspended", "pending", "scheduled", "paused")
    )
    detail = next(s for a, s in cli_statements(captures) if "pinned_deployment_exists" in s)
    detail = re.sub(r"inv\.id in \([^)]*\)", f"inv.id in ('{ids['backing_off']}')", detail)
    detail = re.sub(r"inv\.id = '[^']*'", f"inv.id = '{ids['backing_off']}'", detail)
    (row,) = await _json(client, detail)
    assert (
        row["status"] == "backing-off" and row["num_retries"] == 7 and row["pinned_deployment_exists"] is True
    )
    assert row["target"] == "Counter/c2/add" and row["created_at"] == "2026-11-24T18:34:19.081Z"
    kv = await _json(
        client, "select key, value from state where service_name = 'Counter' and service_key = 'c1' ;"
    )
    assert {"key": "count", "value": "3137"} in kv
    status = await _arrow(client, "SELECT id, status FROM sys_invocation LIMIT 3")
    assert str(status.schema) == "id: large_string\nstatus: large_string not null"


async def test_select_one_matches_the_official_stream(client: httpx.AsyncClient, captures: Path) -> None:
    table = await _arrow(client, "SELECT 1 AS one")
    hexdump = (captures / "query-arrow-select-1.arrow.hex.txt").read_text().splitlines()[1]
    official = pa.ipc.open_stream(bytes.fromhex(hexdump)).read_all()
    assert table.equals(official) and table.schema.equals(official.schema)


async def test_errors(client: httpx.AsyncClient) -> None:
    r = await client.post("/v4/query", json={"query": "SELEC 1"})
    assert r.status_code == 400
    assert r.json() == {
        "message": "Datafusion error: SQL error: "
        'ParserError("Expected: an SQL statement, found: SELEC at Line: 1, Column: 1")'
    }
    r = await client.post("/v4/query", json={"query": "SELECT * FROM nosuchtable"})
    assert r.status_code == 500
    assert r.json() == {
        "message": "Datafusion error: Error during planning: table 'restate.public.nosuchtable' not found"
    }
    r = await client.post("/v4/query", content=b'{"foo":1}', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.headers["content-type"] == "text/plain; charset=utf-8"
    expected = (
        "Failed to deserialize the JSON body into the target type: missing field `query` at line 1 column 9"
    )
    assert r.text == expected
    for sql in (
        "INSERT INTO state SELECT * FROM state",
        "CREATE TABLE t AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "DROP VIEW sys_invocation",
        "SET datafusion.execution.batch_size = 1",
    ):
        r = await client.post("/v4/query", json={"query": sql})
        assert r.status_code == 400, (sql, r.text)
    assert (await client.get("/v4/query")).status_code == 405


async def test_runaway_queries_are_bounded(store: Fixture) -> None:
    runner = QueryRunner(QueryLimits(timeout_s=1.0, max_rows=50))
    try:
        started = time.monotonic()
        with pytest.raises(Exception, match="did not finish") as info:
            await runner.run(
                SqliteSnapshot(store.path),
                "SELECT count(*) FROM range(1000000) a, range(1000000) b, range(1000000) c",
            )
        assert time.monotonic() - started < 10
        assert getattr(info.value, "status", None) == 500
        assert not runner._all  # the worker running it was killed
        with pytest.raises(Exception, match="exceeds 50 rows") as too_big:
            await runner.run(SqliteSnapshot(store.path), "SELECT * FROM range(100000)")
        assert getattr(too_big.value, "status", None) == 400
        # Still serving, and concurrently.
        answers = await asyncio.gather(
            *(runner.run(SqliteSnapshot(store.path), "SELECT 1 AS x") for _ in range(4))
        )
        assert [a.to_pylist() for a in answers] == [[{"x": 1}]] * 4
    finally:
        runner.close()
    assert all(w.proc.poll() is not None for w in list(runner._idle))


async def test_kept_tables_answer_as_fresh_ones(store: Fixture, captures: Path) -> None:
    """A worker keeps the last query's tables registered: queries in any order, over changing state (the
    invoker's view depends on the snapshot's clock), answer exactly as a fresh in-process run does."""
    statements = [sql for _, sql in cli_statements(captures)]
    others = [
        "SELECT id, status, retry_count, next_retry_at FROM sys_invocation ORDER BY id",
        "SELECT service_name, count(*) AS n FROM state GROUP BY service_name ORDER BY service_name",
        "SELECT id, in_flight, next_retry_at FROM sys_invocation_state ORDER BY id",
        "SELECT 1 AS x",
    ]
    runner = QueryRunner(QueryLimits(concurrency=1))
    try:
        for now in (NOW, NOW + 3_600_000, NOW, 0):
            for sql in [*statements[:6], *others, *statements[:3]]:
                got = await runner.run(SqliteSnapshot(store.path, now_ms=now), sql)
                want = run_query(SqliteSnapshot(store.path, now_ms=now), sql)
                assert got.equals(want), sql
        (worker,) = runner._idle
        assert worker.cached  # the last query's tables stayed with the worker
    finally:
        runner.close()
