"""The SQL page: a read-only query form, the tables and their columns, examples, and the result with links
to share or download it. Pure code."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from pyrestate.server.console.markup import BASE, Row, esc, invocation_href, link, page, sql_href, table

EXAMPLES = (
    (
        "Failing invocations",
        "SELECT id, target, retry_count, last_failure FROM sys_invocation "
        "WHERE status = 'backing-off' ORDER BY modified_at DESC LIMIT 50",
    ),
    (
        "Invocations per service and status",
        "SELECT target_service_name, status, COUNT(*) AS n FROM sys_invocation GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    ("Paused invocations", "SELECT id, target, modified_at FROM sys_invocation WHERE status = 'paused'"),
    (
        "Scheduled invocations",
        "SELECT id, target, scheduled_start_at FROM sys_invocation "
        "WHERE status = 'scheduled' ORDER BY scheduled_start_at",
    ),
    (
        "Largest objects",
        "SELECT service_name, service_key, COUNT(*) AS keys, SUM(value_length) AS bytes "
        "FROM state GROUP BY 1, 2 ORDER BY bytes DESC LIMIT 20",
    ),
    ("Deployments", "SELECT id, endpoint, created_at FROM sys_deployment"),
)
_ID_COLUMNS = ("id", "invocation_id", "invoked_id", "invoked_by_id", "restarted_from")


def sql_page(
    sql: str,
    rows: Sequence[Row] | None = None,
    *,
    tables: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    error: str | None = None,
    limit: int = 500,
) -> str:
    side = ""
    if tables:
        side = "<h2>Tables</h2>" + "".join(
            f"<details><summary>{esc(t)}</summary><ul>"
            + "".join(
                f'<li><code>{esc(c)}</code> <span class="muted">{esc(ty)}</span></li>' for c, ty in cols
            )
            + "</ul></details>"
            for t, cols in tables.items()
        )
    side += (
        "<h2>Examples</h2><ul>"
        + "".join(f"<li>{link(sql_href(q), label)}</li>" for label, q in EXAMPLES)
        + "</ul>"
    )
    form = (
        f'<form method="get" action="{BASE}/sql" id="sql-form"><label for="sql-q">Query (read-only)</label>'
        f'<textarea id="sql-q" name="q" rows="7">{esc(sql)}</textarea><br>'
        '<button type="submit">Run</button></form>'
    )
    result = ""
    if rows is not None:
        columns: list[str] = []
        for r in rows[:limit]:
            for c in r:
                if c not in columns:
                    columns.append(c)
        cells = [tuple(_sql_cell(c, r.get(c)) for c in columns) for r in rows[:limit]]
        more = f" (first {int(limit)} shown)" if len(rows) > limit else ""
        share = f"{BASE}/sql/download?{urlencode({'q': sql})}"
        result = (
            f"<p>{len(rows)} row(s){more}. {link(sql_href(sql), 'Link to this query')} · "
            f"{link(share + '&format=csv', 'CSV')} · {link(share + '&format=json', 'JSON')}</p>"
            + (table(columns, cells, tid="sql-result") if columns else "")
        )
    body = f'<div class="layout"><section>{form}{result}</section><aside>{side}</aside></div>'
    return page("SQL", body, error=error, active="/sql")


def _sql_cell(column: str, value: object) -> str:
    if (
        isinstance(value, str)
        and value.startswith("inv_")
        and (column in _ID_COLUMNS or column.endswith("_id"))
    ):
        return link(invocation_href(value), value, cls="mono")
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False)
    return f"<pre>{esc(value)}</pre>"
