"""The service, deployment and state pages: services and their handlers (with the invoke form), deployments
(with registration), and the keys and state of an object or workflow (with the edit forms). Pure code."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from pyrestate.server.console.markup import (
    BASE,
    Row,
    esc,
    invocation_href,
    invocations_href,
    keys_href,
    link,
    mono,
    page,
    post_button,
    seg,
    service_href,
    state_href,
    table,
    value_block,
)
from pyrestate.server.values import payload_pretty


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
