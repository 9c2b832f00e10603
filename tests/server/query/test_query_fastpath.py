"""The status count answered straight from SQLite equals what the general DataFusion path answers."""

from __future__ import annotations

import json

import pytest
from store import NOW, Fixture

from pyrestate.server.query import SqliteSnapshot, run_query
from pyrestate.server.query.encode import to_json_rows
from pyrestate.server.query.fastpath import match_status_count


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
    ],
)
def test_status_count_matches_the_general_path(store: Fixture, fast: str, general: str) -> None:
    assert match_status_count(fast) is not None
    assert match_status_count(general) is None
    got, want = _rows(store, fast), _rows(store, general)
    assert got == want
    assert got[0] and 0 not in got[0].values()  # the fixture has both kinds: neither count is trivially 0


def test_other_shapes_take_the_general_path() -> None:
    for sql in (
        "SELECT count(*) FROM sys_invocation WHERE status != 'running'",
        "SELECT count(*) FROM sys_invocation_status WHERE status != 'completed'",
        "SELECT id FROM sys_invocation WHERE status != 'completed'",
    ):
        assert match_status_count(sql) is None
