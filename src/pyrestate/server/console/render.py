"""HTML pages of the operator console. Pure code: rows and dicts in, HTML strings out.

Every value that reaches the page goes through `esc` (text and attribute values alike) and every URL path
segment through `seg`, so hostile names, keys or state values render as text and never as markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

Row = Mapping[str, Any]

BASE = "/ui"
ACTIONS = ("cancel", "kill", "purge", "pause", "resume")
FAILURE_EXCERPT = 160

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}
header{background:#223;color:#fff;padding:.5em 1em}header a{color:#fff;margin-right:1em}
main{padding:1em}table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f6}td.mono,code,pre{font-family:ui-monospace,monospace;font-size:13px}
pre{white-space:pre-wrap;word-break:break-all;margin:0}
.flash{background:#eef6ee;border:1px solid #7a7;padding:.5em}
.error{background:#fbeeee;border:1px solid #c77;padding:.5em}
form.inline{display:inline}textarea{width:100%;font-family:monospace}
"""


def esc(value: object) -> str:
    """Text or attribute value; None is empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return html.escape(str(value), quote=True)


def seg(value: str) -> str:
    """One URL path segment (a `/` in a key stays inside its segment)."""
    return quote(value, safe="")


def invocation_href(inv_id: str) -> str:
    return f"{BASE}/invocations/{seg(inv_id)}"


def state_href(service: str, key: str) -> str:
    return f"{BASE}/state/{seg(service)}/{seg(key)}"


def invocations_href(**params: str) -> str:
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{BASE}/invocations" + (f"?{query}" if query else "")


def link(href: str, text: object) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def excerpt(text: object, limit: int = FAILURE_EXCERPT) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """`rows` hold cells that are already HTML (built with `esc`/`link`)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(
    title: str, body: str, *, flash: str | None = None, error: str | None = None, refresh_s: int | None = None
) -> str:
    notes = ""
    if flash:
        notes += f'<p class="flash">{esc(flash)}</p>'
    if error:
        notes += f'<p class="error">{esc(error)}</p>'
    meta = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    nav = "".join(
        link(f"{BASE}{path}", label)
        for path, label in (("", "Overview"), ("/invocations", "Invocations"), ("/sql", "SQL"))
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)} · pyrestate</title>{meta}<style>{_CSS}</style></head>"
        f"<body><header>{nav}</header><main><h1>{esc(title)}</h1>{notes}{body}</main></body></html>"
    )


def overview_page(services: Sequence[Row], deployments: Sequence[Row], counts: Sequence[Row]) -> str:
    """services: name, ty, handlers (names), deployment_id; deployments: id, endpoint, created_at,
    services; counts: status, n."""
    svc_rows = [
        (
            link(invocations_href(service=str(s["name"])), s["name"]),
            esc(s.get("ty")),
            esc(", ".join(str(h) for h in s.get("handlers") or ())),
            f'<span class="mono">{esc(s.get("deployment_id"))}</span>',
        )
        for s in services
    ]
    dep_rows = [
        (
            f'<span class="mono">{esc(d.get("id"))}</span>',
            esc(d.get("endpoint")),
            esc(d.get("created_at")),
            esc(", ".join(str(x) for x in d.get("services") or ())),
        )
        for d in deployments
    ]
    count_rows = [
        (link(invocations_href(status=str(c.get("status") or "")), c.get("status")), esc(c.get("n")))
        for c in counts
    ]
    total = sum(int(c.get("n") or 0) for c in counts)
    body = (
        "<h2>Services</h2>"
        + (table(("name", "type", "handlers", "deployment"), svc_rows) if svc_rows else "<p>No services.</p>")
        + "<h2>Deployments</h2>"
        + (
            table(("id", "endpoint", "created", "services"), dep_rows)
            if dep_rows
            else "<p>No deployments.</p>"
        )
        + f"<h2>Invocations ({esc(total)})</h2>"
        + (table(("status", "count"), count_rows) if count_rows else "<p>No invocations.</p>")
    )
    return page("Overview", body)


def invocations_page(rows: Sequence[Row], *, status: str = "", service: str = "", limit: int = 100) -> str:
    form = (
        f'<form method="get" action="{esc(BASE)}/invocations">'
        f'service <input name="service" value="{esc(service)}"> '
        f'status <input name="status" value="{esc(status)}"> '
        '<button type="submit">Filter</button></form>'
    )
    cells = [
        (
            link(invocation_href(str(r["id"])), r["id"]),
            esc(r.get("target")),
            esc(_status_label(r)),
            esc(r.get("created_at")),
            esc(r.get("modified_at")),
            f"<pre>{esc(excerpt(r.get('last_failure')))}</pre>",
        )
        for r in rows
    ]
    shown = f"<p>{len(rows)} shown, newest first (at most {int(limit)}).</p>"
    body = (
        form
        + shown
        + (table(("id", "target", "status", "created", "modified", "last failure"), cells) if cells else "")
    )
    return page("Invocations", body, refresh_s=10)


def _status_label(inv: Row) -> str:
    status = str(inv.get("status") or "?")
    result = inv.get("completion_result")
    return f"{status} ({result})" if status == "completed" and result else status


_DETAIL_FIELDS = (
    "target",
    "status",
    "completion_result",
    "completion_failure",
    "idempotency_key",
    "invoked_by",
    "invoked_by_id",
    "invoked_by_target",
    "pinned_deployment_id",
    "created_at",
    "modified_at",
    "scheduled_at",
    "running_at",
    "completed_at",
    "retry_count",
    "next_retry_at",
    "last_failure",
    "last_failure_error_code",
    "last_failure_related_entry_name",
    "journal_size",
)


def invocation_page(
    inv: Row, journal: Sequence[Row], *, flash: str | None = None, error: str | None = None
) -> str:
    inv_id = str(inv.get("id") or "")
    details = table(
        ("field", "value"),
        [(esc(f), f"<pre>{esc(inv.get(f))}</pre>") for f in _DETAIL_FIELDS if inv.get(f) is not None],
    )
    key = inv.get("target_service_key")
    service = inv.get("target_service_name")
    state = (
        f"<p>{link(state_href(str(service), str(key)), 'State of this object')}</p>"
        if key is not None and service is not None and inv.get("target_service_ty") != "service"
        else ""
    )
    buttons = "".join(
        f'<form class="inline" method="post" action="{esc(invocation_href(inv_id))}/{action}">'
        f'<button type="submit">{action}</button></form> '
        for action in ACTIONS
    )
    timeline = [
        (
            esc(e.get("index")),
            esc(e.get("entry_type")),
            esc(e.get("name") or e.get("promise_name")),
            esc(e.get("completed")),
            _invoked(e),
            esc(e.get("sleep_wakeup_at")),
            esc(e.get("appended_at")),
        )
        for e in journal
    ]
    body = (
        f'<p class="mono">{esc(inv_id)}</p>{details}{state}<h2>Actions</h2><p>{buttons}</p>'
        "<h2>Journal</h2>"
        + (
            table(("index", "entry type", "name", "completed", "invoked", "wakes up", "appended"), timeline)
            if timeline
            else "<p>No journal entries.</p>"
        )
    )
    return page("Invocation", body, flash=flash, error=error)


def _invoked(entry: Row) -> str:
    target = esc(entry.get("invoked_target"))
    child = entry.get("invoked_id")
    return f"{target} {link(invocation_href(str(child)), child)}" if child else target


def state_page(
    service: str, key: str, rows: Sequence[Row], *, after: str | None = None, next_after: str | None = None
) -> str:
    """rows: key, value_utf8 (absent when not UTF-8), value (hex); one page of them, after the key `after`
    (None: the first page), `next_after` the key to continue from when there are more."""
    cells = [
        (
            f'<span class="mono">{esc(r.get("key"))}</span>',
            f"<pre>{esc(r['value_utf8'])}</pre>"
            if r.get("value_utf8") is not None
            else f"<pre>hex: {esc(r.get('value'))}</pre>",
        )
        for r in rows
    ]
    body = f'<p>{esc(service)} / <span class="mono">{esc(key)}</span></p>' + (
        table(("key", "value"), cells) if cells else "<p>No state.</p>"
    )
    href = state_href(service, key)
    links = []
    if after is not None:
        links.append(link(href, "First page"))
    if next_after is not None:
        links.append(link(f"{href}?{urlencode({'after': next_after})}", "Next page"))
    if links:
        body += "<p>" + " · ".join(links) + "</p>"
    return page("State", body)


def sql_page(
    sql: str, rows: Sequence[Row] | None = None, *, error: str | None = None, limit: int = 500
) -> str:
    form = (
        f'<form method="post" action="{esc(BASE)}/sql">'
        f'<textarea name="query" rows="6">{esc(sql)}</textarea><br>'
        '<button type="submit">Run</button></form>'
    )
    result = ""
    if rows is not None:
        columns: list[str] = []
        for r in rows[:limit]:
            for c in r:
                if c not in columns:
                    columns.append(c)
        cells = [tuple(f"<pre>{esc(_cell(r.get(c)))}</pre>" for c in columns) for r in rows[:limit]]
        more = f" (first {int(limit)} shown)" if len(rows) > limit else ""
        result = f"<p>{len(rows)} row(s){more}.</p>" + (table(columns, cells) if columns else "")
    return page("SQL", form + result, error=error)


def _cell(value: object) -> object:
    if isinstance(value, list | dict):
        import json

        return json.dumps(value, ensure_ascii=False)
    return value


def message_page(title: str, message: str) -> str:
    return page(title, f"<p>{esc(message)}</p>")
