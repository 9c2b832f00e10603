"""Counting invocations by status without building the tables.

`SELECT count(*) FROM sys_invocation WHERE status != 'completed'` (how tools poll for a drained backlog)
would otherwise decode every retained invocation in Python and hand them all to DataFusion. The view
shows `completed` exactly for stored `completed` statuses, one row per stored status, so the count is a
count over the status table, which SQLite answers from the stored JSON by itself. Only this exact shape
is recognised (any alias, any case and spacing); everything else takes the general path.
"""

from __future__ import annotations

import re
import sqlite3

import pyarrow as pa

_COUNT_BY_STATUS = re.compile(
    r"""\s*select\s+count\s*\(\s*\*\s*\)(?:\s+as\s+(?P<alias>[a-z_][a-z0-9_]*|"[^"]+"))?
        \s+from\s+sys_invocation
        \s+where\s+status\s*(?P<op>!=|<>|=)\s*'completed'\s*;?\s*""",
    re.IGNORECASE | re.VERBOSE,
)

# `!=` counts every status but completed; json_extract reads the field stored for every status.
_STATUS = "json_extract(CAST(v AS TEXT), '$.status')"
_SQL = {
    False: f"SELECT count(*) FROM invocation_status WHERE {_STATUS} != 'completed'",
    True: f"SELECT count(*) FROM invocation_status WHERE {_STATUS} = 'completed'",
}


def match_status_count(sql: str) -> tuple[str, bool] | None:
    """(result column name, counting completed ones) when `sql` is the status count, else None."""
    m = _COUNT_BY_STATUS.fullmatch(sql)
    if m is None:
        return None
    alias = m.group("alias")
    if alias is None:
        name = "count(*)"
    elif alias.startswith('"'):
        name = alias[1:-1]
    else:
        name = alias.lower()  # unquoted identifiers are case-folded, as DataFusion does
    return name, m.group("op") == "="


def count_statuses(conn: sqlite3.Connection, completed: bool, column: str) -> pa.Table:
    (n,) = conn.execute(_SQL[completed]).fetchone()
    return pa.table({column: pa.array([n], type=pa.int64())})
