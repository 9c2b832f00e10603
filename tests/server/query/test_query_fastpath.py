"""The status count answered straight from SQLite equals what the general DataFusion path answers."""

from __future__ import annotations

import json

import pytest
from store import NOW, Fixture

from pyrestate.server.query import SqliteSnapshot, run_query
from pyrestate.server.query.encode import to_json_rows
from pyrestate.server.query.fastpath import match_status_count

CLI_COUNT = """SELECT COUNT(1) FROM (SELECT
            *
        FROM sys_invocation inv
        LIMIT 50000
        )
        WHERE status != 'completed'"""


def _rows(store: Fixture, sql: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(
        to_json_rows(run_query(SqliteSnapshot(store.path, now_ms=NOW), sql))
    )["rows"]
    return rows


@pytest.mark.parametrize(
    ("fast", "general"),
    [
        (
            "SELECT count(*) AS n FROM sys_invocation WHERE status != 'completed'",
            "SELECT count(*) AS n FROM sys_invocation WHERE status != 'completed' AND id IS NOT NULL",
        ),
        (
            "select COUNT( * ) from sys_invocation where status='completed';",
            "SELECT count(*) FROM sys_invocation WHERE status = 'completed' AND id IS NOT NULL",
        ),
        (
            "SELECT count(*) AS \"Pending\" FROM sys_invocation WHERE status <> 'completed'",
            "SELECT count(*) AS \"Pending\" FROM sys_invocation WHERE status <> 'completed' AND 1 = 1",
        ),
        (  # what the official CLI's `invocations list` sends first (tests/captures/cli-admin-requests.txt)
            CLI_COUNT,
            CLI_COUNT.replace("WHERE status != 'completed'", "WHERE status != 'completed' AND 1 = 1"),
        ),
        (
            "select count(1) as n from (select * from sys_invocation limit 1000) where status = 'completed'",
            "select count(1) as n from (select * from sys_invocation limit 1000) where status = 'completed' "
            "and 1 = 1",
        ),
    ],
)
def test_status_count_matches_the_general_path(store: Fixture, fast: str, general: str) -> None:
    assert match_status_count(fast) is not None
    assert match_status_count(general) is None
    got, want = _rows(store, fast), _rows(store, general)
    assert got == want
    assert got[0] and 0 not in got[0].values()  # the fixture has both kinds: neither count is trivially 0
    # The Arrow answer too (the CLI asks for Arrow): same column name, type and nullability.
    fast_table = run_query(SqliteSnapshot(store.path, now_ms=NOW), fast)
    general_table = run_query(SqliteSnapshot(store.path, now_ms=NOW), general)
    assert fast_table.equals(general_table, check_metadata=True)


def test_a_limit_below_the_invocation_count_takes_the_general_path(store: Fixture) -> None:
    sql = "SELECT COUNT(1) FROM (SELECT * FROM sys_invocation inv LIMIT 2) WHERE status != 'completed'"
    assert match_status_count(sql) is not None
    snapshot = SqliteSnapshot(store.path, now_ms=NOW)
    assert snapshot.count_invocation_statuses(False, "count(Int64(1))", 2) is None
    snapshot.close()
    (row,) = _rows(store, sql)
    assert row["count(Int64(1))"] <= 2


def test_other_shapes_take_the_general_path() -> None:
    for sql in (
        "SELECT count(*) FROM sys_invocation WHERE status != 'running'",
        "SELECT count(*) FROM sys_invocation_status WHERE status != 'completed'",
        "SELECT id FROM sys_invocation WHERE status != 'completed'",
        "SELECT COUNT(1) FROM (SELECT * FROM sys_invocation LIMIT 5 OFFSET 2) WHERE status != 'completed'",
        "SELECT COUNT(1) FROM (SELECT id FROM sys_invocation LIMIT 5) WHERE status != 'completed'",
        "SELECT COUNT(2) FROM (SELECT * FROM sys_invocation LIMIT 5) WHERE status != 'completed'",
    ):
        assert match_status_count(sql) is None
