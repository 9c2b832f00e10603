"""Counting invocations by status without building the tables.

`SELECT count(*) FROM sys_invocation WHERE status != 'completed'` (how tools poll for a drained backlog)
would otherwise decode every retained invocation in Python and hand them all to DataFusion. The view
shows `completed` exactly for stored `completed` statuses, one row per stored status, so the count is a
count over the status table, which SQLite answers from the stored JSON by itself. Only this exact shape
is recognised (any alias, any case and spacing); everything else takes the general path.

So is the count the official CLI's `invocations list` sends first, over a LIMITed subquery:
`SELECT COUNT(1) FROM (SELECT * FROM sys_invocation inv LIMIT 50000) WHERE status != 'completed'`. The
subquery takes an unspecified `LIMIT` rows of the view, so the count is the plain count only when the view
has no more rows than that; with more, the general path answers (whichever rows DataFusion takes).
"""

from __future__ import annotations

import re
import sqlite3

import pyarrow as pa

_COUNT_BY_STATUS = re.compile(
    r"""\s*select\s+count\s*\(\s*(?P<arg>\*|1)\s*\)(?:\s+as\s+(?P<alias>[a-z_][a-z0-9_]*|"[^"]+"))?
        \s+from\s+(?:sys_invocation
          |\(\s*select\s+\*\s+from\s+sys_invocation(?:\s+(?:as\s+)?(?!limit\b)[a-z_][a-z0-9_]*)?
             \s+limit\s+(?P<limit>[0-9]{1,18})\s*\))
        \s+where\s+status\s*(?P<op>!=|<>|=)\s*'completed'\s*;?\s*""",
    re.IGNORECASE | re.VERBOSE,
)

# `!=` counts every status but completed; json_extract reads the field stored for every status.
_STATUS = "json_extract(CAST(v AS TEXT), '$.status')"
_SQL = {
    False: f"SELECT count(*) FROM invocation_status WHERE {_STATUS} != 'completed'",
    True: f"SELECT count(*) FROM invocation_status WHERE {_STATUS} = 'completed'",
}


def match_status_count(sql: str) -> tuple[str, bool, int | None] | None:
    """(result column name, counting completed ones, the subquery's LIMIT if any) when `sql` is a status
    count, else None."""
    m = _COUNT_BY_STATUS.fullmatch(sql)
    if m is None:
        return None
    alias = m.group("alias")
    limit = m.group("limit")
    if alias is None:
        name = "count(*)" if m.group("arg") == "*" else "count(Int64(1))"
    elif alias.startswith('"'):
        name = alias[1:-1]
    else:
        name = alias.lower()  # unquoted identifiers are case-folded, as DataFusion does
    return name, m.group("op") == "=", None if limit is None else int(limit)


def count_statuses(
    conn: sqlite3.Connection, completed: bool, column: str, limit: int | None = None
) -> pa.Table | None:
    """The count, as DataFusion types it (a non-null Int64); None when the view has more than `limit` rows."""
    if limit is not None:
        (total,) = conn.execute("SELECT count(*) FROM invocation_status").fetchone()
        if total > limit:
            return None
    (n,) = conn.execute(_SQL[completed]).fetchone()
    field = pa.field(column, pa.int64(), nullable=False)
    return pa.Table.from_arrays([pa.array([n], type=pa.int64())], schema=pa.schema([field]))
