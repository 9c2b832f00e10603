"""HTML pages of the operator console. Pure code: rows and dicts in, HTML strings out.

Every value that reaches the page goes through `esc` (text and attribute values alike) and every URL path
segment through `seg`, so hostile names, keys, state values or errors render as text and never as markup.
No inline script or style: the one script and stylesheet are served from `/ui/static/` (see assets.py).
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from pyrestate.server.values import entry_payload, entry_state_key, payload_pretty

Row = Mapping[str, Any]

BASE = "/ui"
FAILURE_EXCERPT = 160
STATUSES = ("pending", "scheduled", "ready", "running", "backing-off", "suspended", "paused", "completed")
# Which actions apply in which status (the engine refuses the others); restart-as-new is not offered because
# this server answers it with 501.
_ACTIONS_BY_STATUS: dict[str, tuple[str, ...]] = {
    "running": ("pause", "cancel", "kill"),
    "backing-off": ("pause", "cancel", "kill"),
    "ready": ("pause", "cancel", "kill"),
    "suspended": ("resume", "cancel", "kill"),
    "paused": ("resume", "cancel", "kill"),
    "pending": ("cancel", "kill"),
    "scheduled": ("cancel", "kill"),
    "completed": ("purge",),
}
ACTIONS = ("cancel", "kill", "purge", "pause", "resume")
CONFIRM = {
    "cancel": "Cancel this invocation? Its handler gets a cancellation and runs its compensations.",
    "kill": "Kill this invocation? It stops at once, without compensations, and its callers get a failure.",
    "purge": "Purge this invocation? Its journal, status and output are deleted for good.",
}
NAV = (
    ("", "Overview"),
    ("/invocations", "Invocations"),
    ("/services", "Services"),
    ("/deployments", "Deployments"),
    ("/sql", "SQL"),
)


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


def service_href(service: str) -> str:
    return f"{BASE}/services/{seg(service)}"


def keys_href(service: str) -> str:
    return f"{BASE}/state/{seg(service)}"


def state_href(service: str, key: str) -> str:
    return f"{BASE}/state/{seg(service)}/{seg(key)}"


def invocations_href(**params: str) -> str:
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{BASE}/invocations" + (f"?{query}" if query else "")


def sql_href(sql: str) -> str:
    return f"{BASE}/sql?{urlencode({'q': sql})}"


def link(href: str, text: object, *, cls: str = "") -> str:
    c = f' class="{esc(cls)}"' if cls else ""
    return f'<a href="{esc(href)}"{c}>{esc(text)}</a>'


def excerpt(text: object, limit: int = FAILURE_EXCERPT) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def table(columns: Sequence[str], rows: Iterable[Sequence[str]], *, tid: str = "") -> str:
    """`rows` hold cells that are already HTML (built with `esc`/`link`)."""
    head = "".join(f'<th scope="col">{esc(c)}</th>' for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    ident = f' id="{esc(tid)}"' if tid else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def mono(value: object) -> str:
    return f'<span class="mono">{esc(value)}</span>'


def status_badge(status: object, result: object = None) -> str:
    s = str(status or "?")
    label = f"{s} ({result})" if s == "completed" and result else s
    kind = str(result) if s == "completed" and result in ("success", "failure") else s
    cls = f"st st-{kind}" if kind in (*STATUSES, "success", "failure") else "st"
    return f'<span class="{cls}">{esc(label)}</span>'


def value_block(data: bytes | None) -> str:
    """A stored value: JSON pretty-printed, else the text, else base64 (labelled)."""
    if data is None:
        return ""
    kind, text = payload_pretty(data)
    label = "" if kind == "json" else f'<span class="muted">{esc(kind)}:</span> '
    return f"{label}<pre>{esc(text)}</pre>"


def page(
    title: str,
    body: str,
    *,
    flash: str | None = None,
    error: str | None = None,
    live: bool | None = None,
    active: str = "",
) -> str:
    """`live`: None for a page without live refresh, else whether the refresh box starts ticked."""
    notes = ""
    if flash:
        notes += f'<p class="flash" role="status">{esc(flash)}</p>'
    if error:
        notes += f'<p class="error" role="alert">{esc(error)}</p>'
    current = ' aria-current="page"'
    nav = "".join(
        f'<a href="{esc(BASE + path)}"{current if path == active else ""}>{esc(label)}</a>'
        for path, label in NAV
    )
    toggle = ""
    if live is not None:
        checked = " checked" if live else ""
        toggle = (
            f'<p><label><input type="checkbox" id="live"{checked}> Live refresh</label> '
            '<span id="refreshed" class="muted" aria-live="polite"></span></p>'
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(title)} · pyrestate</title><link rel="stylesheet" href="{BASE}/static/console.css">'
        f'<script src="{BASE}/static/console.js" defer></script></head>'
        f'<body><a class="skip" href="#main">Skip to content</a><header><nav aria-label="Console">{nav}</nav>'
        f'</header><main id="main"><h1>{esc(title)}</h1>{notes}{toggle}{body}</main></body></html>'
    )


def post_button(
    action: str, label: str, *, confirm: str | None = None, danger: bool = False, **fields: str
) -> str:
    attr = f' data-confirm="{esc(confirm)}"' if confirm else ""
    hidden = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in fields.items())
    cls = ' class="danger"' if danger else ""
    return (
        f'<form class="inline" method="post" action="{esc(action)}"{attr}>{hidden}'
        f'<button type="submit"{cls}>{esc(label)}</button></form>'
    )


# ---------------------------------------------------------------- overview


def overview_page(
    counts: Sequence[Row],
    failing: Sequence[Row],
    paused: Sequence[Row],
    scheduled: Sequence[Row],
    throughput: Sequence[Row],
    *,
    services: int,
    deployments: int,
    live: bool = True,
) -> str:
    """counts: status, n; failing/paused/scheduled: invocation rows; throughput: minute, created,
    completed."""
    by_status = {str(c.get("status")): int(c.get("n") or 0) for c in counts}
    total = sum(by_status.values())
    now = "".join(
        f"<li>{link(invocations_href(status=s), s)}: <strong>{by_status.get(s, 0)}</strong></li>"
        for s in (
            "running",
            "backing-off",
            "paused",
            "suspended",
            "scheduled",
            "pending",
            "ready",
            "completed",
        )
    )
    peak = max(
        [
            1,
            *(int(r.get("created") or 0) for r in throughput),
            *(int(r.get("completed") or 0) for r in throughput),
        ]
    )
    tp_rows = [
        (
            esc(r.get("minute")),
            _meter(int(r.get("created") or 0), peak),
            _meter(int(r.get("completed") or 0), peak),
        )
        for r in throughput
    ]
    body = (
        f'<div id="overview-now" data-live><h2>Now ({total} invocations stored)</h2>'
        f'<ul class="counts">{now}</ul>'
        + "<h2>Failing (backing off)</h2>"
        + (_short_list(failing, failure=True) if failing else "<p>Nothing is failing.</p>")
        + "<h2>Paused</h2>"
        + (_short_list(paused) if paused else "<p>Nothing is paused.</p>")
        + "<h2>Scheduled next</h2>"
        + (_short_list(scheduled, when="scheduled_start_at") if scheduled else "<p>Nothing is scheduled.</p>")
        + "<h2>Throughput, last 10 minutes (per minute)</h2>"
        + (table(("minute (UTC)", "started", "completed"), tp_rows) if tp_rows else "<p>No activity.</p>")
        + "</div>"
        + f"<p>{link(BASE + '/services', f'{services} service(s)')} · "
        + f"{link(BASE + '/deployments', f'{deployments} deployment(s)')}</p>"
    )
    return page("Overview", body, live=live, active="")


def _meter(value: int, peak: int) -> str:
    return f'<meter min="0" max="{peak}" value="{value}"></meter> {value}'


def _short_list(rows: Sequence[Row], *, failure: bool = False, when: str = "modified_at") -> str:
    cells = []
    for r in rows:
        row = [link(invocation_href(str(r.get("id"))), r.get("id")), esc(r.get("target")), esc(r.get(when))]
        if failure:
            row += [esc(r.get("retry_count")), f"<pre>{esc(excerpt(r.get('last_failure')))}</pre>"]
        cells.append(row)
    cols = ["id", "target", when.replace("_", " ")] + (["attempts", "last failure"] if failure else [])
    return table(cols, cells)


# ---------------------------------------------------------------- invocations


FILTERS = ("id", "service", "handler", "key", "status", "deployment", "idempotency_key", "since", "until")
_FILTER_LABELS = {
    "id": "Invocation id",
    "service": "Service",
    "handler": "Handler",
    "key": "Key",
    "status": "Status",
    "deployment": "Deployment",
    "idempotency_key": "Idempotency key",
    "since": "Created from (UTC)",
    "until": "Created before (UTC)",
}


def invocations_page(
    rows: Sequence[Row],
    filters: Mapping[str, str],
    counts: Sequence[Row],
    *,
    next_cursor: str | None,
    paged: bool,
    live: bool = False,
    error: str | None = None,
) -> str:
    """rows: one page of invocations, newest first; counts: status, n under the same filters (all statuses);
    next_cursor: where the next (older) page starts, None on the last page; paged: not the first page."""
    fields = []
    for name in FILTERS:
        value = filters.get(name, "")
        if name == "status":
            options = "".join(
                f'<option value="{esc(s)}"{" selected" if s == value else ""}>{esc(s or "any")}</option>'
                for s in ("", *STATUSES)
            )
            control = f'<select id="f-status" name="status">{options}</select>'
        else:
            kind = "datetime-local" if name in ("since", "until") else "text"
            extra = ' step="1"' if kind == "datetime-local" else ""
            control = f'<input id="f-{name}" type="{kind}" name="{name}" value="{esc(value)}"{extra}>'
        fields.append(f'<label for="f-{name}">{esc(_FILTER_LABELS[name])}{control}</label>')
    form = (
        f'<form class="filters" method="get" action="{BASE}/invocations" role="search">{"".join(fields)}'
        f'<button type="submit">Search</button> {link(BASE + "/invocations", "Clear")}</form>'
    )
    base = {k: v for k, v in filters.items() if v and k in FILTERS}
    total = sum(int(c.get("n") or 0) for c in counts)
    chips = "".join(
        f"{link(invocations_href(**{**base, 'status': str(c.get('status'))}), '')[:-4]}"
        f"{status_badge(c.get('status'))} {esc(c.get('n'))}</a>"
        for c in counts
    )
    cells = [
        (
            link(invocation_href(str(r["id"])), r["id"], cls="mono"),
            link(service_href(str(r.get("target_service_name") or "")), r.get("target")),
            status_badge(r.get("status"), r.get("completion_result")),
            esc(r.get("created_at")),
            esc(r.get("modified_at")),
            esc(r.get("retry_count") or ""),
            f"<pre>{esc(excerpt(r.get('last_failure')))}</pre>",
        )
        for r in rows
    ]
    pager = []
    if paged:
        pager.append(link(invocations_href(**base), "« Newest"))
    if next_cursor is not None:
        pager.append(link(invocations_href(**base, before=next_cursor), "Older »"))
    body = (
        form
        + f'<div id="inv-results" data-live><p class="counts">{esc(total)} matching: {chips}</p>'
        + (
            table(("id", "target", "status", "created", "modified", "attempts", "last failure"), cells)
            if cells
            else "<p>No invocations match.</p>"
        )
        + f'<p class="pager">{"".join(pager)}</p></div>'
    )
    return page("Invocations", body, live=live, active="/invocations", error=error)


# ---------------------------------------------------------------- one invocation


def actions_for(status: str) -> tuple[str, ...]:
    return _ACTIONS_BY_STATUS.get(status, ())


def invocation_page(
    inv: Row,
    journal: Sequence[Row],
    *,
    flash: str | None = None,
    error: str | None = None,
    live: bool = False,
) -> str:
    inv_id = str(inv.get("id") or "")
    status = str(inv.get("status") or "")
    service = str(inv.get("target_service_name") or "")
    key = inv.get("target_service_key")
    facts: list[tuple[str, str]] = [
        ("target", link(service_href(service), inv.get("target"))),
        ("status", status_badge(status, inv.get("completion_result"))),
    ]
    if inv.get("invoked_by_id"):
        caller_id = str(inv["invoked_by_id"])
        caller = (
            f"{esc(inv.get('invoked_by_target'))} {link(invocation_href(caller_id), caller_id, cls='mono')}"
        )
        facts.append(("invoked by", caller))
    else:
        facts.append(("invoked by", esc(inv.get("invoked_by"))))
    for f in (
        "idempotency_key",
        "created_at",
        "scheduled_start_at",
        "running_at",
        "modified_at",
        "completed_at",
    ):
        if inv.get(f) is not None:
            facts.append((f.replace("_", " "), esc(inv.get(f))))
    if inv.get("pinned_deployment_id"):
        facts.append(
            (
                "deployment",
                link(f"{BASE}/deployments#{inv['pinned_deployment_id']}", inv["pinned_deployment_id"]),
            )
        )
    if key is not None and inv.get("target_service_ty") in ("virtual_object", "workflow"):
        facts.append(("key", link(state_href(service, str(key)), key)))
    details = table(("", ""), [(esc(k), v) for k, v in facts])

    buttons = "".join(
        post_button(
            f"{invocation_href(inv_id)}/{a}",
            a,
            confirm=CONFIRM.get(a),
            danger=a in ("kill", "purge"),
        )
        for a in actions_for(status)
    )
    actions = f'<h2>Actions</h2><p class="actions">{buttons}</p>' if buttons else ""

    retry = ""
    if inv.get("retry_count") or inv.get("last_failure"):
        failure = str(inv.get("last_failure") or "")
        first, _, _ = failure.partition("\n")
        related = inv.get("last_failure_related_entry_name") or inv.get("last_failure_related_command_name")
        retry = (
            '<h2>Retries</h2><table id="retries"><tbody>'
            f'<tr><th scope="row">attempts</th><td>{esc(inv.get("retry_count"))}</td></tr>'
            f'<tr><th scope="row">next retry</th><td>{esc(inv.get("next_retry_at") or "—")}</td></tr>'
            f'<tr><th scope="row">error code</th><td>{esc(inv.get("last_failure_error_code"))}</td></tr>'
            + (f'<tr><th scope="row">related entry</th><td>{esc(related)}</td></tr>' if related else "")
            + f'<tr><th scope="row">last error</th><td><details open><summary>{esc(first)}</summary>'
            f"<pre>{esc(failure)}</pre></details></td></tr></tbody></table>"
        )

    result = ""
    output = next((e for e in journal if e.get("entry_type") == "Command: Output"), None)
    if status == "completed" or output is not None:
        if inv.get("completion_failure"):
            result = f'<h2>Failure</h2><pre class="failure">{esc(inv.get("completion_failure"))}</pre>'
        elif output is not None:
            found = entry_payload(output.get("entry_json"))
            if isinstance(found, dict):
                result = f"<h2>Failure</h2><pre>[{esc(found['code'])}] {esc(found['message'])}</pre>"
            else:
                result = "<h2>Output</h2>" + (value_block(found) if found is not None else "<p>(empty)</p>")

    body = (
        f'<p class="mono">{esc(inv_id)}</p><div id="inv-detail" data-live>{details}{actions}{retry}{result}'
        "<h2>Journal</h2>" + (timeline(inv, journal) if journal else "<p>No journal entries.</p>") + "</div>"
    )
    return page(
        f"Invocation {inv.get('target') or ''}",
        body,
        flash=flash,
        error=error,
        live=live,
        active="/invocations",
    )


def parse_time(text: object) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration_text(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _completion_ids(entry_json: object) -> tuple[str, set[int]]:
    """("command"|"notification"|"", the completion ids an entry names)."""
    try:
        node = json.loads(entry_json) if isinstance(entry_json, str) else None
    except ValueError:
        return "", set()
    if not isinstance(node, dict):
        return "", set()
    kind = "command" if "Command" in node else "notification" if "Notification" in node else ""
    ids: set[int] = set()
    stack: list[Any] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            for k, v in n.items():
                if k.endswith("completion_id") and isinstance(v, int):
                    ids.add(v)
                elif isinstance(v, dict | list):
                    stack.append(v)
        elif isinstance(n, list):
            stack.extend(n)
    return kind, ids


def timeline(inv: Row, journal: Sequence[Row]) -> str:
    """One row per entry: when it was appended (and how long after the start), how long a command waited
    for its completion, what it did and the value it carried."""
    start = parse_time(inv.get("created_at"))
    done_at: dict[int, dt.datetime] = {}
    for e in journal:
        kind, ids = _completion_ids(e.get("entry_json"))
        at = parse_time(e.get("appended_at"))
        if kind == "notification" and at is not None:
            for i in ids:
                done_at[i] = max(done_at.get(i, at), at)
    rows = []
    for e in journal:
        at = parse_time(e.get("appended_at"))
        offset = (
            f' <span class="muted">+{esc(duration_text((at - start).total_seconds()))}</span>'
            if at and start
            else ""
        )
        kind, ids = _completion_ids(e.get("entry_json"))
        took = ""
        if kind == "command" and at is not None:
            ends = [done_at[i] for i in ids if i in done_at]
            if ends:
                took = esc(duration_text((max(ends) - at).total_seconds()))
            elif ids and e.get("completed") is False:
                took = '<span class="muted">waiting…</span>'
        rows.append(
            (
                esc(e.get("index")),
                esc(e.get("appended_at")) + offset,
                took,
                esc(e.get("entry_type")),
                _entry_detail(inv, e),
            )
        )
    return table(("#", "appended", "took", "entry", "detail"), rows, tid="journal")


def _entry_detail(inv: Row, e: Row) -> str:
    parts = []
    if e.get("name"):
        parts.append(f"<strong>{esc(e['name'])}</strong>")
    if e.get("invoked_target"):
        target = str(e["invoked_target"])
        parts.append("→ " + link(service_href(target.split("/", 1)[0]), target))
    if e.get("invoked_id"):
        parts.append(link(invocation_href(str(e["invoked_id"])), e["invoked_id"], cls="mono"))
    if e.get("sleep_wakeup_at"):
        parts.append(f"wakes up at <time>{esc(e['sleep_wakeup_at'])}</time>")
    if e.get("promise_name"):
        parts.append(f"promise <code>{esc(e['promise_name'])}</code>")
    entry_json = e.get("entry_json")
    key = entry_state_key(entry_json) if "State" in str(e.get("entry_type")) else None
    if key is not None:
        svc = inv.get("target_service_name")
        obj = inv.get("target_service_key")
        label = f"key <code>{esc(key)}</code>"
        if svc and obj is not None:
            label = f'key <a href="{esc(state_href(str(svc), str(obj)))}"><code>{esc(key)}</code></a>'
        parts.append(label)
    if e.get("completed") is False:
        parts.append('<span class="muted">(waiting)</span>')
    found = entry_payload(entry_json)
    if isinstance(found, dict):
        parts.append(f'<pre class="failure">failure [{esc(found["code"])}] {esc(found["message"])}</pre>')
    elif found is not None:
        parts.append(value_block(found))
    return " ".join(parts)


# ---------------------------------------------------------------- services and deployments


def services_page(services: Sequence[Row]) -> str:
    """services: name, ty, handlers, deployment_id, revision, public."""
    rows = [
        (
            link(service_href(str(s["name"])), s["name"]),
            esc(s.get("ty")),
            esc(", ".join(str(h) for h in s.get("handlers") or ())),
            link(f"{BASE}/deployments#{s.get('deployment_id')}", s.get("deployment_id"), cls="mono"),
            esc(s.get("revision")),
            esc(s.get("public")),
            link(invocations_href(service=str(s["name"])), "invocations"),
        )
        for s in services
    ]
    body = (
        table(("name", "type", "handlers", "deployment", "revision", "public", ""), rows)
        if rows
        else f"<p>No services. {link(BASE + '/deployments', 'Register a deployment')}.</p>"
    )
    return page("Services", body, active="/services")


def service_page(
    svc: Row,
    handlers: Sequence[Row],
    deployments: Sequence[Row],
    *,
    result: str = "",
    error: str | None = None,
    form: Mapping[str, str] | None = None,
) -> str:
    """svc: name, ty, revision, public, documentation; handlers: name, ty, input_content_type,
    input_json_schema, output_content_type, output_json_schema, documentation; deployments: id, endpoint,
    latest, active, total (invocations pinned). `result`: HTML of the last invoke, already built."""
    name = str(svc["name"])
    keyed = svc.get("ty") in ("VirtualObject", "Workflow")
    form = form or {}
    head = (
        f"<p>type <strong>{esc(svc.get('ty'))}</strong> · revision {esc(svc.get('revision'))} · "
        f"public {esc(svc.get('public'))} · {link(service_href(name) + '/openapi', 'OpenAPI document')} · "
        f"{link(invocations_href(service=name), 'invocations')}"
        + (f" · {link(keys_href(name), 'keys and state')}" if keyed else "")
        + "</p>"
        + (f"<p>{esc(svc.get('documentation'))}</p>" if svc.get("documentation") else "")
    )
    h_rows = [
        (
            f"<strong>{esc(h['name'])}</strong>"
            + (
                f'<br><span class="muted">{esc(h.get("documentation"))}</span>'
                if h.get("documentation")
                else ""
            ),
            esc(h.get("ty") or ""),
            esc(h.get("input_content_type") or "(no input)") + _schema(h.get("input_json_schema")),
            esc(h.get("output_content_type") or "") + _schema(h.get("output_json_schema")),
        )
        for h in handlers
    ]
    d_rows = [
        (
            f'<span id="{esc(d.get("id"))}" class="mono">{esc(d.get("id"))}</span>'
            + (" (latest)" if d.get("latest") else ""),
            esc(d.get("endpoint")),
            esc(d.get("active")),
            esc(d.get("total")),
        )
        for d in deployments
    ]
    options = "".join(
        f'<option value="{esc(h["name"])}"{" selected" if form.get("handler") == h["name"] else ""}>'
        f"{esc(h['name'])}</option>"
        for h in handlers
    )
    mode = form.get("mode", "call")
    call_checked = "" if mode == "send" else " checked"
    send_checked = " checked" if mode == "send" else ""
    key_field = (
        '<label for="inv-key">Key</label> '
        f'<input id="inv-key" name="key" value="{esc(form.get("key", ""))}" required> '
        if keyed
        else ""
    )
    invoke = (
        f'<form method="post" action="{esc(service_href(name))}/invoke" id="invoke-form">'
        '<label for="inv-handler">Handler</label> '
        f'<select id="inv-handler" name="handler">{options}</select> '
        + key_field
        + "<fieldset><legend>How</legend>"
        f'<label><input type="radio" name="mode" value="call"{call_checked}> call (wait for it)</label> '
        f'<label><input type="radio" name="mode" value="send"{send_checked}> send (do not wait)</label>'
        "</fieldset>"
        '<label for="inv-idem">Idempotency key (optional)</label> '
        f'<input id="inv-idem" name="idempotency_key" value="{esc(form.get("idempotency_key", ""))}"><br>'
        '<label for="inv-body">JSON body</label>'
        f'<textarea id="inv-body" name="body" rows="5">{esc(form.get("body", ""))}</textarea>'
        '<button type="submit">Invoke</button></form>'
    )
    body = (
        head
        + "<h2>Handlers</h2>"
        + table(("handler", "type", "input", "output"), h_rows)
        + "<h2>Deployments</h2>"
        + table(("deployment", "endpoint", "active invocations pinned", "all invocations pinned"), d_rows)
        + "<h2>Invoke</h2>"
        + (f'<div id="invoke-result">{result}</div>' if result else "")
        + invoke
    )
    return page(f"Service {name}", body, error=error, active="/services")


def _schema(schema: object) -> str:
    if schema is None:
        return ""
    text = json.dumps(schema, indent=2, ensure_ascii=False)
    return f"<details><summary>JSON schema</summary><pre>{esc(text)}</pre></details>"


def invoke_result(
    inv_id: str, *, sent: bool, output: bytes | None = None, failure: str | None = None, pending: bool = False
) -> str:
    parts = [f"<p>Invocation {link(invocation_href(inv_id), inv_id, cls='mono')}"]
    if sent:
        parts.append(" sent.</p>")
    elif pending:
        parts.append(" is still running; follow the link for its progress.</p>")
    elif failure is not None:
        parts.append(f' failed:</p><pre class="failure">{esc(failure)}</pre>')
    else:
        parts.append(" answered:</p>" + (value_block(output) if output else "<p>(empty)</p>"))
    return "".join(parts)


def deployments_page(
    deployments: Sequence[Row], *, flash: str | None = None, error: str | None = None, uri: str = ""
) -> str:
    """deployments: id, endpoint, created_at, services, sdk_version, protocol, active, total."""
    rows = [
        (
            f'<span id="{esc(d.get("id"))}" class="mono">{esc(d.get("id"))}</span>',
            esc(d.get("endpoint")),
            esc(d.get("created_at")),
            ", ".join(link(service_href(str(s)), s) for s in d.get("services") or ()),
            esc(d.get("sdk_version") or ""),
            esc(d.get("active")),
            esc(d.get("total")),
            post_button(
                f"{BASE}/deployments/{seg(str(d.get('id')))}/remove",
                "remove",
                confirm="Remove this deployment? Invocations pinned to it can no longer make progress.",
                danger=True,
            ),
        )
        for d in deployments
    ]
    register = (
        f'<h2>Register a deployment</h2><form method="post" action="{BASE}/deployments" id="register-form">'
        '<label for="dep-uri">Endpoint URI</label> '
        f'<input id="dep-uri" name="uri" size="50" required value="{esc(uri)}"> '
        '<label><input type="checkbox" name="force" value="true"> force (overwrite changed services)</label> '
        '<button type="submit">Register</button></form>'
    )
    body = (
        table(
            ("id", "endpoint", "created", "services", "SDK", "active invocations pinned", "all pinned", ""),
            rows,
        )
        if rows
        else "<p>No deployments.</p>"
    ) + register
    return page("Deployments", body, flash=flash, error=error, active="/deployments")


# ---------------------------------------------------------------- state


def keys_page(service: str, keys: Sequence[str], *, after: str | None, next_after: str | None) -> str:
    rows = [(link(state_href(service, k), k),) for k in keys]
    body = (
        f"<p>{link(service_href(service), service)}: keys with state or promises, in order.</p>"
        + (table(("key",), rows) if rows else "<p>No keys.</p>")
        + _pager(keys_href(service), after, next_after)
    )
    return page(f"Keys of {service}", body, active="/services")


def _pager(href: str, after: str | None, next_after: str | None) -> str:
    links = []
    if after is not None:
        links.append(link(href, "First page"))
    if next_after is not None:
        links.append(link(f"{href}?{urlencode({'after': next_after})}", "Next page"))
    return f'<p class="pager">{"".join(links)}</p>' if links else ""


def state_page(
    service: str,
    key: str,
    rows: Sequence[Row],
    *,
    after: str | None = None,
    next_after: str | None = None,
    version: str = "",
    promises: Sequence[Row] = (),
    editable: bool = True,
    flash: str | None = None,
    error: str | None = None,
) -> str:
    """rows: key, value (hex); one page of them, after the key `after` (None: the first page), `next_after`
    the key to continue from when there are more. `version`: of the whole state as read, for the edit
    forms."""
    action = state_href(service, key)
    cells = []
    for r in rows:
        data = _hex(r.get("value"))
        name = str(r.get("key"))
        edit = ""
        if editable:
            kind, text = payload_pretty(data) if data is not None else ("text", "")
            edit = (
                f'<details><summary>edit</summary><form method="post" action="{esc(action)}">'
                f'<input type="hidden" name="version" value="{esc(version)}">'
                f'<input type="hidden" name="name" value="{esc(name)}">'
                f'<label>new value<textarea name="value" rows="4">{esc(text)}</textarea></label>'
                + _encoding_select("base64" if kind == "base64" else "json" if kind == "json" else "text")
                + '<button type="submit" name="op" value="set">Save</button></form>'
                + post_button(
                    action,
                    "delete key",
                    confirm=f"Delete the state key {name}?",
                    danger=True,
                    version=version,
                    name=name,
                    op="delete",
                )
                + "</details>"
            )
        cells.append((mono(name), value_block(data) if data is not None else "", edit))
    add = ""
    if editable:
        add = (
            f'<h2>Add or replace a key</h2><form method="post" action="{esc(action)}" id="add-state">'
            f'<input type="hidden" name="version" value="{esc(version)}">'
            '<label for="new-name">State key</label> <input id="new-name" name="name" required> '
            '<label for="new-value">Value</label><textarea id="new-value" name="value" rows="3"></textarea>'
            + _encoding_select("json")
            + '<button type="submit" name="op" value="set">Save</button></form>'
            '<p class="muted">Changes replace the whole state of this key, as the admin state API does, '
            "and are "
            "refused if the state changed since this page was loaded.</p>"
        )
    prom = ""
    if promises:
        p_rows = [
            (
                mono(p.get("key")),
                esc(p.get("completed")),
                value_block(_hex(p.get("completion_success_value")))
                if p.get("completion_success_value") is not None
                else f"<pre>{esc(p.get('completion_failure') or '')}</pre>",
            )
            for p in promises
        ]
        prom = "<h2>Promises</h2>" + table(("promise", "completed", "value"), p_rows)
    body = (
        f"<p>{link(service_href(service), service)} / {link(keys_href(service), 'keys')} / {mono(key)} · "
        f"{link(invocations_href(service=service, key=key), 'invocations of this key')}</p>"
        + (table(("state key", "value", ""), cells, tid="state") if cells else "<p>No state.</p>")
        + _pager(action, after, next_after)
        + add
        + prom
    )
    return page("State", body, flash=flash, error=error, active="/services")


def _encoding_select(selected: str) -> str:
    opts = "".join(
        f'<option value="{v}"{" selected" if v == selected else ""}>{label}</option>'
        for v, label in (("json", "JSON"), ("text", "text (UTF-8)"), ("base64", "base64 bytes"))
    )
    return f'<label>as <select name="encoding">{opts}</select></label> '


def _hex(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


# ---------------------------------------------------------------- SQL


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


def message_page(title: str, message: str) -> str:
    return page(title, f"<p>{esc(message)}</p>")
