"""The HTTP/1.1 wire format around llhttp: which requests go to hypercorn, a parsed request's ASGI scope, and
the status lines and closing answers this front writes itself."""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

DEFAULT_MAX_HEAD = 64 * 1024  # larger request heads are answered 431
MAX_FAST_BODY = 1 << 20  # larger bodies are streamed by hypercorn
HANDOFF_HEADERS = frozenset({b"transfer-encoding", b"upgrade", b"expect", b"http2-settings"})
PAUSE_ABOVE = 1 << 20
REFUSAL_LINGER = 1.0  # seconds a refused connection may take to read its 503 before it is cut
_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        # The standard reason phrase, as restate-server (hyper) sends it; none for codes without one (470).
        try:
            reason = HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            reason = b""
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    return line


def closing_answer(status: int, text: bytes = b"") -> bytes:
    return b"%scontent-length: %d\r\ndate: %s\r\nconnection: close\r\n\r\n%s" % (
        status_line(status),
        len(text),
        Date.get(),
        text,
    )


class Date:
    """The `date` header, formatted once per second."""

    second = -1
    value = b""

    @classmethod
    def get(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            cls.value = formatdate(now, usegmt=True).encode("ascii")
        return cls.value


def needs_hypercorn(
    parser: httptools.HttpRequestParser, url: bytes, headers: list[tuple[bytes, bytes]]
) -> bool:
    """Whether hypercorn must answer this request (see the package's docstring for which)."""
    if parser.get_http_version() != "1.1" or parser.get_method() == b"HEAD":
        return True
    if not url.startswith(b"/"):
        return True  # absolute-form or `*`
    for name, value in headers:
        if name in HANDOFF_HEADERS:
            return True
        if name == b"connection" and b"upgrade" in value.lower():
            return True
    return False


def content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The body's length (llhttp has checked the header: one, all digits); None without a host."""
    length = 0
    has_host = False
    for name, value in headers:
        if name == b"content-length":
            length = int(value)
        elif name == b"host":
            has_host = True
    return length if has_host else None  # HTTP/1.1 requires `host` (as h11 does)


def asgi_scope(
    parser: httptools.HttpRequestParser,
    url: bytes,
    headers: list[tuple[bytes, bytes]],
    client: tuple[str, int] | None,
    server: tuple[str, int] | None,
) -> tuple[dict[str, Any], bool]:
    """The ASGI scope of a parsed request, and whether the connection may be kept alive after it."""
    keep_alive = True
    for name, value in headers:
        if name == b"connection" and b"close" in {t.strip() for t in value.lower().split(b",")}:
            keep_alive = False
    path, _, query = url.partition(b"?")
    path = path.partition(b"#")[0]
    decoded = unquote(path.decode("ascii"))  # llhttp admits only visible ASCII in a target
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.1"},
        "http_version": "1.1",
        "method": parser.get_method().decode("ascii"),
        "scheme": "http",
        "path": decoded,
        "raw_path": path,
        "query_string": query.partition(b"#")[0],
        "root_path": "",
        "headers": headers,
        "client": client,
        "server": server,
        "state": {},
        "extensions": {},
    }
    return scope, keep_alive
