"""The invocation pages: the overview, the filtered list of invocations, and one invocation with its
actions, retries, result and journal timeline. Pure code: rows in, HTML out."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pyrestate.server.console.markup import (
    BASE,
    STATUSES,
    Row,
    esc,
    excerpt,
    invocation_href,
    invocations_href,
    link,
    page,
    post_button,
    service_href,
    state_href,
    status_badge,
    table,
    value_block,
)
from pyrestate.server.values import entry_payload, entry_state_key

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
