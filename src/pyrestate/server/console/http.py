"""The console's HTTP vocabulary: its replies and their security headers, the fixed notes a redirect may name,
reading a form, and the cross-site check every POST passes.

A POST whose `Sec-Fetch-Site` says it comes from another site, or whose `Origin` is not one of the console's
own addresses, is refused, because a plain HTML form is the one request a foreign page can make a browser
send here. The addresses come from the configuration, never from the request's `Host` (a DNS-rebinding page
sends a `Host` that matches its own `Origin`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from pyrestate.server.asgi import BodyTooLarge, Headers, Receive, header, read_body
from pyrestate.server.console.markup import message_page

MAX_FORM_BODY = 64 * 1024
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
COMMON_HEADERS = [
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    # Not `no-referrer`: with it, Chromium sends `Origin: null` on the console's own form posts, which the
    # cross-site check must refuse. `same-origin` still tells no other site which console page linked to it.
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", _CSP),
]
HTML_HEADERS = [("content-type", "text/html; charset=utf-8"), *COMMON_HEADERS]
# The notes a redirect's `?done=` or `?failed=` names: fixed texts, so that a crafted link cannot put words of
# its own on the page.
DONE = {
    "cancel": "Cancellation requested.",
    "kill": "Kill requested.",
    "purge": "Invocation purged.",
    "pause": "Pause requested.",
    "resume": "Resume requested.",
    "state": "State update requested.",
    "registered": "Deployment registered.",
    "removed": "Deployment removed.",
}
FAILED = {
    "notfound": "The invocation does not exist.",
    "conflict": "The action does not apply to the invocation in its current status.",
    "badrequest": "The engine refused the action.",
    "unavailable": "The engine is unavailable, nothing was changed.",
    "nodeployment": "The deployment does not exist.",
}


@dataclass(slots=True)
class ConsoleReply:
    """What the admin app sends for a console request (`body` None: no body)."""

    status: int
    body: bytes | None
    headers: list[tuple[str, str]] = field(default_factory=list)


def html_reply(status: int, text: str) -> ConsoleReply:
    return ConsoleReply(status, text.encode(), list(HTML_HEADERS))


def redirect(location: str) -> ConsoleReply:
    return ConsoleReply(303, b"", [("location", location), ("cache-control", "no-store")])


async def read_form(receive: Receive, headers: Headers) -> tuple[dict[str, str], ConsoleReply | None]:
    try:
        raw = await read_body(receive, headers, MAX_FORM_BODY)
    except BodyTooLarge:
        return {}, html_reply(413, message_page("Too large", "The form is too large."))
    try:
        return dict(parse_qsl(raw.decode(), keep_blank_values=True)), None
    except UnicodeDecodeError:
        return {}, html_reply(400, message_page("Bad request", "The form is not UTF-8."))


def forbidden() -> ConsoleReply:
    return html_reply(403, message_page("Forbidden", "Cross-site form submission refused."))


def not_allowed(allow: str) -> ConsoleReply:
    return ConsoleReply(405, None, [("allow", allow)])


_LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")


def console_origins(admin_bind: str, admin_url: str | None = None) -> frozenset[str]:
    """The origins (`scheme://host:port`, lower case) a console page can have: `admin_url` when configured,
    and `http://` + the bind address, with the loopback names when bound to loopback or to every address."""
    host, _, port = admin_bind.rpartition(":")
    host = host.lower()
    hosts = {host}
    if host in ("0.0.0.0", "[::]", "::", "localhost", "[::1]") or host.startswith("127."):
        hosts.update(_LOCAL_NAMES)
    origins = {f"http://{h}:{port}" for h in hosts}
    if admin_url:
        parts = urlsplit(admin_url.strip())
        if parts.scheme and parts.netloc:
            netloc = parts.netloc.lower()
            default = {"http": ":80", "https": ":443"}.get(parts.scheme.lower(), "")
            origins.add(f"{parts.scheme.lower()}://{netloc.removesuffix(default)}")
    return frozenset(origins)


def cross_site(headers: Headers, origins: frozenset[str]) -> bool:
    """True when the browser says the request was made by a page of another origin."""
    fetch_site = header(headers, "sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return True
    origin = header(headers, "origin")
    if origin is None:
        return False  # not sent by a browser form (browsers send Origin on every POST)
    return origin.strip().rstrip("/").lower() not in origins
