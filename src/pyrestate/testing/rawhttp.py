"""Raw-socket HTTP/1.1 for tests that attack a server's parser: malformed and partial requests, and counts
of a process's open descriptors."""

from __future__ import annotations

import os
import socket
import time

# A TLS 1.2 ClientHello's first bytes (record header, handshake header, version, part of the random).
TLS_CLIENT_HELLO = bytes.fromhex("16030100c4010000c00303") + b"\x5a" * 32

# Requests that must be answered 400 and closed: each one is parsed differently by lenient parsers.
MALFORMED: dict[str, bytes] = {
    "duplicate-content-length": (
        b"POST /restate/health HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\ncontent-length: 44\r\n\r\n"
        b"GET /restate/health HTTP/1.1\r\nhost: x\r\n\r\n"
    ),
    "same-content-length-twice": (
        b"POST /restate/health HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n{}"
    ),
    "content-length-list": b"POST /restate/health HTTP/1.1\r\nhost: x\r\ncontent-length: 2, 2\r\n\r\n{}",
    "content-length-sign": b"POST /restate/health HTTP/1.1\r\nhost: x\r\ncontent-length: +2\r\n\r\n{}",
    "chunked-and-content-length": (
        b"POST /restate/health HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n"
        b"0\r\n\r\n"
    ),
    "xchunked": b"POST /restate/health HTTP/1.1\r\nhost: x\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n",
    "chunked-then-identity": (
        b"POST /restate/health HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n"
    ),
    "space-before-colon": (
        b"POST /restate/health HTTP/1.1\r\nhost: x\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n"
    ),
    "obs-fold": b"GET /restate/health HTTP/1.1\r\nhost: x\r\nx-a: 1\r\n transfer-encoding: chunked\r\n\r\n",
    "bare-lf": b"GET /restate/health HTTP/1.1\nhost: x\n\n",
    "bare-lf-in-headers": b"GET /restate/health HTTP/1.1\r\nhost: x\nx-a: 1\r\n\r\n",
    "bare-cr": b"GET /restate/health HTTP/1.1\rhost: x\r\r",
    "nul-in-header": b"GET /restate/health HTTP/1.1\r\nhost: x\r\nx-a: a\x00b\r\n\r\n",
    "no-host": b"GET /restate/health HTTP/1.1\r\n\r\n",
}

# Requests cut short (then the client half-closes): the server must close its side promptly.
PARTIAL: dict[str, bytes] = {
    "partial-head": b"POST /restate/health HTTP/1.1\r\nhost: x\r\ncontent-le",
    "partial-request-line": b"GE",
    "short-body": b"POST /restate/health HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{}",
    "tls-client-hello": TLS_CLIENT_HELLO,
    "bare-lf-partial": b"GET / HTTP/1.1\nhost: x\n",
}


def exchange(
    port: int, data: bytes, *, half_close: bool = True, timeout: float = 5.0
) -> tuple[bytes, bool]:
    """Send `data` to 127.0.0.1:`port` (then EOF when `half_close`); read until the server closes or
    `timeout`. Returns what arrived and whether the server closed the connection in time."""
    deadline = time.monotonic() + timeout
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return received, False
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk


def open_fds(pid: int) -> int:
    """How many descriptors process `pid` has open (Linux /proc)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for_fds(pid: int, at_most: int, timeout: float = 10.0) -> int:
    """Wait until `pid` holds at most `at_most` descriptors; the last count seen."""
    deadline = time.monotonic() + timeout
    while True:
        n = open_fds(pid)
        if n <= at_most or time.monotonic() > deadline:
            return n
        time.sleep(0.1)
