"""Tables built from storage records: schemas against the official server's, values, JSON formatting."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from store import NOW, Fixture

from pyrestate.server.query import QueryError, SqliteSnapshot, run_query
from pyrestate.server.query.encode import format_duration, format_timestamp, to_json_rows
from pyrestate.server.query.journal import COMMAND_NAMES, NOTIFICATION_NAMES, journal_rows
from pyrestate.server.query.runner import referenced_tables
from pyrestate.server.query.tables import build_tables
from pyrestate.server.storage.sqlite import SqliteStorage


def query(store: Fixture, sql: str) -> pa.Table:
    return run_query(SqliteSnapshot(store.path, now_ms=NOW), sql)


def rows(store: Fixture, sql: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(to_json_rows(query(store, sql)))["rows"]
    return result


def _captured_columns(captures: Path) -> dict[str, list[tuple[str, str, bool]]]:
    out: dict[str, list[tuple[str, str, bool]]] = {}
    lines = (captures / "query-tables-columns.txt").read_text().splitlines()
    for head, cols in zip(lines[::2], lines[1::2], strict=True):
        name, count = head.split()
        parsed = []
        for col in re.split(r", (?=\w+:)", cols.strip()):
            col_name, _, ty = col.partition(":")
            parsed.append((col_name, ty.rstrip("!"), not ty.endswith("!")))
        assert len(parsed) == int(count), name
        out[name] = parsed
    return out


def test_every_official_table_has_the_official_columns_and_types(store: Fixture, captures: Path) -> None:
    expected = _captured_columns(captures)
    got = rows(
        store,
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    )
    actual: dict[str, list[tuple[str, str, bool]]] = {}
    for r in got:
        actual.setdefault(str(r["table_name"]), []).append(
            (str(r["column_name"]), str(r["data_type"]), r["is_nullable"] == "YES")
        )
    for table, cols in expected.items():
        assert actual.get(table) == cols, table
    assert len(actual["sys_invocation"]) == 51
    assert set(actual) - set(expected) == {"sys_idempotency"}


def test_status_vocabulary(store: Fixture) -> None:
    got = {r["id"]: r["status"] for r in rows(store, "SELECT id, status FROM sys_invocation")}
    ids = store.ids
    assert got == {
        ids["done"]: "completed",
        ids["killed"]: "completed",
        ids["child"]: "completed",
        ids["running"]: "running",
        ids["backing_off"]: "backing-off",
        ids["suspended"]: "suspended",
        ids["pending"]: "pending",
        ids["scheduled"]: "scheduled",
        ids["paused"]: "paused",
    }
    raw = {r["id"]: r["status"] for r in rows(store, "SELECT id, status FROM sys_invocation_status")}
    assert raw[ids["pending"]] == "inboxed" and raw[ids["running"]] == "invoked"


def test_invocation_columns(store: Fixture) -> None:
    ids = store.ids
    by_id = {r["id"]: r for r in rows(store, "SELECT * FROM sys_invocation")}
    killed = by_id[ids["killed"]]
    assert killed["completion_result"] == "failure" and killed["completion_failure"] == "[409] killed"
    assert killed["target"] == "Counter/c1/add" and killed["target_service_ty"] == "virtual_object"
    assert killed["completion_retention"] == "PT86400S"
    assert killed["pinned_deployment_id"] == "dp_116zPhmWzWGcGcAu2eXpLYl"
    assert killed["pinned_service_protocol_version"] == 6 and killed["journal_commands_size"] == 2
    assert "retry_count" not in killed  # the invoker knows nothing about completed invocations
    assert by_id[ids["done"]]["completion_result"] == "success"
    suspended = by_id[ids["suspended"]]
    assert suspended["suspended_waiting_for_completions"] == []
    assert suspended["suspended_waiting_for_signals"] == [1, 17]
    assert json.loads(str(suspended["suspended_waiting_future_json"])) == {
        "Unknown": [{"Single": {"SignalIndex": 1}}, {"Single": {"SignalIndex": 17}}]
    }
    backing = by_id[ids["backing_off"]]
    assert backing["retry_count"] == 7 and backing["next_retry_at"] == format_timestamp(NOW + 60_000, "ms")
    assert backing["last_failure"].startswith("[500] TypeError")
    assert backing["last_attempt_server"] == "restate-sdk-python/1.3.0"
    assert by_id[ids["pending"]]["inboxed_at"] == format_timestamp(NOW - 5_000, "ms")
    assert "journal_size" not in by_id[ids["pending"]]
    assert by_id[ids["scheduled"]]["scheduled_start_at"] == format_timestamp(NOW + 3_600_000, "ms")
    child = by_id[ids["child"]]
    assert child["invoked_by"] == "service" and child["invoked_by_id"] == ids["suspended"]
    assert child["invoked_by_target"] == "Awk/a3/wait" and child["invoked_by_service_name"] == "Awk"
    assert by_id[ids["paused"]]["last_failure"] == "[500] always failing"


def test_journal_rows(store: Fixture) -> None:
    got = rows(store, f"SELECT * FROM sys_journal WHERE id = '{store.ids['suspended']}' ORDER BY index")
    assert [r["entry_type"] for r in got] == [
        "Command: Input",
        "Command: Run",
        "Notification: Run",
        "Command: Call",
        "Notification: CallInvocationId",
        "Command: Sleep",
        "Command: GetPromise",
        "Notification: Call",
        "Notification: Signal",
    ]
    run, call, sleep, promise = got[1], got[3], got[5], got[6]
    assert run["name"] == "split task" and run["completed"] is True and run["version"] == 2
    assert run["raw"] == "5801620a73706c6974207461736b" and run["raw_length"] == 14
    assert call["invoked_id"] == store.ids["child"] and call["invoked_target"] == "worker/runSubtask"
    assert call["completed"] is True
    assert sleep["sleep_wakeup_at"] == format_timestamp(NOW + 45_000, "ms") and sleep["completed"] is False
    assert promise["promise_name"] == "approval"
    assert "name" not in got[2]  # notifications have no name
    assert json.loads(str(got[8]["entry_json"])) == {
        "Notification": {"Signal": {"id": {"Index": 18}, "result": "Void"}}
    }


_TYPES_BY_NAME = {
    **{f"Command: {k}": t for t, k in COMMAND_NAMES.items()},
    **{f"Notification: {k}": t for t, k in NOTIFICATION_NAMES.items()},
}


def test_journal_json_matches_the_official_server(captures: Path) -> None:
    text = (captures / "query-samples.txt").read_text()
    section = text.split("### SELECT * FROM sys_journal WHERE id")[1].split("\n", 1)[1].split("\n### ")[0]
    official = json.loads(section)["rows"]
    entries = [(r["index"], int(_TYPES_BY_NAME[r["entry_type"]]), bytes.fromhex(r["raw"])) for r in official]
    mine = journal_rows(entries)
    assert len(mine) == len(official) > 5
    for theirs, ours in zip(official, mine, strict=True):
        assert ours.entry_type == theirs["entry_type"]
        assert ours.name == theirs.get("name")
        assert json.loads(str(ours.entry_lite_json)) == json.loads(theirs["entry_lite_json"]), theirs[
            "entry_type"
        ]
        if theirs["entry_type"] != "Command: Call":  # Restate adds its internal request (span context, …)
            assert json.loads(str(ours.entry_json)) == json.loads(theirs["entry_json"]), theirs["entry_type"]


def test_state_promise_and_schema_tables(store: Fixture) -> None:
    assert rows(
        store, "select key, value from state where service_name = 'Counter' and service_key = 'c1' ;"
    ) == [
        {"key": "bin", "value": "ff00"},
        {"key": "count", "value": "3137"},
    ]
    state = rows(store, "SELECT * FROM state WHERE key = 'stage'")[0]
    assert state["partition_key"] == 5865031921755300123  # same as the official server for Wf/w1
    assert state["value_utf8"] == '"approved"' and state["key_length"] == 5 and state["value_length"] == 10
    promises = {r["key"]: r for r in rows(store, "SELECT * FROM sys_promise")}
    assert promises["approval"]["completion_success_value_utf8"] == '"alice"'
    assert promises["approval"]["completion_success_value"] == "22616c69636522"
    assert promises["rejection"]["completion_failure"] == "[500] nope"
    assert promises["open"]["completed"] is False
    dep = rows(store, "SELECT * FROM sys_deployment")[0]
    assert dep["ty"] == "http" and dep["services"] == ["Counter", "Awk", "Wf", "taskWorker"]
    svc = {r["name"]: r["ty"] for r in rows(store, "SELECT name, ty FROM sys_service")}
    assert svc == {
        "Counter": "virtual_object",
        "Awk": "virtual_object",
        "Wf": "workflow",
        "taskWorker": "service",
    }
    assert rows(store, "SELECT service_key, id, sequence_number FROM sys_inbox") == [
        {"service_key": "a3", "id": store.ids["pending"], "sequence_number": 1}
    ]
    holders = {
        r["service_key"]: r["invocation_id"] for r in rows(store, "SELECT * FROM sys_keyed_service_status")
    }
    assert holders == {
        "a2": store.ids["running"],
        "a3": store.ids["suspended"],
        "c2": store.ids["backing_off"],
    }
    idem = rows(
        store, f"SELECT idempotency_key FROM sys_idempotency WHERE invocation_id = '{store.ids['done']}'"
    )
    assert idem == [{"idempotency_key": "k-done"}]


def test_json_formatting() -> None:
    assert format_timestamp(1_795_545_269_081, "ms") == "2026-11-24T18:34:29.081Z"
    assert format_timestamp(1_795_545_269_000, "ms") == "2026-11-24T18:34:29Z"
    assert format_timestamp(1_795_545_269_081_500, "us") == "2026-11-24T18:34:29.081500Z"
    assert format_duration(86_400_000, "ms") == "PT86400S"
    assert format_duration(1_500, "ms") == "PT1.500S"
    table = pa.table(
        {
            "b": pa.array([b"\x01\xff", None], pa.large_binary()),
            "t": pa.array([0, None], pa.timestamp("ms", tz="+00:00")),
            "l": pa.array([[1, 2], None], pa.list_(pa.uint32())),
            "n": pa.array([None, 3], pa.uint64()),
        }
    )
    assert json.loads(to_json_rows(table)) == {
        "rows": [{"b": "01ff", "t": "1970-01-01T00:00:00Z", "l": [1, 2]}, {"n": 3}]
    }


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("SELECT * FROM sys_invocation", {"sys_invocation_status", "sys_invocation_state"}),
        ("SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'sys_journal'", set()),
        ("select key from state -- sys_journal", {"state"}),
    ],
)
def test_only_referenced_tables_are_read(sql: str, tables: set[str]) -> None:
    assert referenced_tables(sql) == tables


def test_consecutive_queries_see_their_own_snapshot(store: Fixture, tmp_path: Path) -> None:
    """The DataFusion session is reused between queries; the view and tables must be each query's own."""
    empty = tmp_path / "empty.sqlite"
    storage = SqliteStorage(empty)
    asyncio.run(storage.open())
    asyncio.run(storage.close())
    count = "SELECT count(*) AS n FROM sys_invocation"
    full = rows(store, count)[0]["n"]
    assert full == len(store.ids) > 0
    assert json.loads(to_json_rows(run_query(SqliteSnapshot(empty, now_ms=NOW), count)))["rows"] == [{"n": 0}]
    assert rows(store, count)[0]["n"] == full
    # A failed query leaves nothing registered that the next one would trip over.
    with pytest.raises(QueryError):
        query(store, "SELECT nope FROM sys_invocation")
    assert rows(store, "SELECT count(*) AS n FROM sys_invocation WHERE status = 'completed'")[0]["n"] > 0


def test_unchanged_statuses_reuse_their_arrow_table(store: Fixture, tmp_path: Path) -> None:
    def status_table(path: Path) -> pa.Table:
        snap = SqliteSnapshot(path, now_ms=NOW)
        try:
            return build_tables(snap, ["sys_invocation_status"])["sys_invocation_status"]
        finally:
            snap.close()

    first = status_table(store.path)
    assert status_table(store.path) is first  # same stored statuses: the table built last time
    fewer = tmp_path / "fewer.sqlite"
    with sqlite3.connect(store.path) as src, sqlite3.connect(fewer) as dst:
        src.backup(dst)
        dst.execute(
            "DELETE FROM invocation_status"
            " WHERE invocation_id = (SELECT min(invocation_id) FROM invocation_status)"
        )
    assert status_table(fewer).num_rows == first.num_rows - 1
    again = status_table(store.path)
    assert again is not first and again.equals(first)
