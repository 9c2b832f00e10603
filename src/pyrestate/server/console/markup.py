"""The console's shared HTML: escaping, links to its pages, tables, badges, stored values, the page layout
and POST buttons. Pure code, like every page renderer built on it.

Every value that reaches the page goes through `esc` (text and attribute values alike) and every URL path
segment through `seg`, so hostile names, keys, state values or errors render as text and never as markup.
No inline script or style: the one script and stylesheet are served from `/ui/static/` (see assets.py).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from pyrestate.server.values import payload_pretty

Row = Mapping[str, Any]

BASE = "/ui"
FAILURE_EXCERPT = 160
STATUSES = ("pending", "scheduled", "ready", "running", "backing-off", "suspended", "paused", "completed")
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


def message_page(title: str, message: str) -> str:
    return page(title, f"<p>{esc(message)}</p>")
