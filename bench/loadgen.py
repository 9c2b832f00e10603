"""A lean asyncio HTTP/1.1 load generator, used when wrk is not installed and by the soak.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length or chunked responses) to drive the ingress with
`conc` connections, each sending its next request as soon as the previous response arrives, like wrk does.
Run as a separate process (`python -m bench.loadgen ...`) so its CPU is measured apart from the harness; it
prints the same `WRKJSON {...}` line as bench/post.lua.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import sys
import time
from array import array
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")
_ID_RE = re.compile(rb'"invocationId"\s*:\s*"([^"]+)"')


class HttpError(Exception):
    pass


class H1Connection:
    """One keep-alive HTTP/1.1 connection; requests on it are strictly sequential."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> H1Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        length = -1
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value.strip())
            elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            body = bytearray()
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
            return status, bytes(body)
        if length < 0:
            raise HttpError("response without Content-Length is not supported on keep-alive")
        return status, await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        self.writer.close()


def build_request(method: str, host: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if method != "GET":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


@dataclass
class LoadResult:
    latencies_us: array[float] = field(default_factory=lambda: array("d"))
    sent: int = 0
    acked: int = 0
    responses: int = 0
    err_connect: int = 0
    err_read: int = 0
    err_status: int = 0
    err_timeout: int = 0
    duration_us: int = 0

    def summary(self) -> dict[str, float | int]:
        lat = sorted(self.latencies_us)

        def pct(p: float) -> int:
            return int(lat[min(len(lat) - 1, int(len(lat) * p / 100.0))]) if lat else 0

        return {
            "requests": self.responses,
            "duration_us": self.duration_us,
            "sent": self.sent,
            "acked": self.acked,
            "responses": self.responses,
            "err_connect": self.err_connect,
            "err_read": self.err_read,
            "err_write": 0,
            "err_status": self.err_status,
            "err_timeout": self.err_timeout,
            "p50_us": pct(50),
            "p90_us": pct(90),
            "p99_us": pct(99),
            "p999_us": pct(99.9),
            "mean_us": round(sum(lat) / len(lat), 1) if lat else 0.0,
            "max_us": int(lat[-1]) if lat else 0,
        }


async def run_load(
    url: str,
    path_tmpl: str,
    nkeys: int,
    body: str,
    conc: int,
    duration: float | None = None,
    total: int | None = None,
    timeout: float = 30.0,
    on_ok: Callable[[bytes], None] | None = None,
) -> LoadResult:
    """Drive `conc` connections until `duration` seconds pass or `total` requests were sent."""
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    hostport = f"{host}:{port}"
    payload = body.encode()
    fixed = build_request("POST", hostport, path_tmpl, payload) if nkeys <= 0 else None
    res = LoadResult()
    t0 = time.monotonic()
    deadline = t0 + duration if duration is not None else float("inf")
    rng = random.Random()

    def next_request() -> bytes | None:
        if time.monotonic() >= deadline or (total is not None and res.sent >= total):
            return None
        res.sent += 1
        if fixed is not None:
            return fixed
        path = path_tmpl.replace("{k}", f"k{rng.randrange(nkeys)}")
        return build_request("POST", hostport, path, payload)

    async def worker() -> None:
        conn: H1Connection | None = None
        while True:
            raw = next_request()
            if raw is None:
                break
            try:
                if conn is None:
                    conn = await H1Connection.open(host, port)
            except OSError:
                res.err_connect += 1
                await asyncio.sleep(0.05)
                continue
            start = time.perf_counter()
            try:
                status, resp = await asyncio.wait_for(conn.request(raw), timeout)
            except TimeoutError:
                res.err_timeout += 1
                conn.close()
                conn = None
                continue
            except (OSError, asyncio.IncompleteReadError, HttpError, ValueError):
                res.err_read += 1
                conn.close()
                conn = None
                continue
            res.latencies_us.append((time.perf_counter() - start) * 1e6)
            res.responses += 1
            if 200 <= status < 300:
                res.acked += 1
                if on_ok is not None:
                    on_ok(resp)
            else:
                res.err_status += 1
        if conn is not None:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(conc)))
    res.duration_us = int((time.monotonic() - t0) * 1e6)
    return res


def _id_writer(out: TextIO) -> Callable[[bytes], None]:
    def on_ok(body: bytes) -> None:
        m = _ID_RE.search(body)
        if m:
            out.write(m.group(1).decode() + "\n")

    return on_ok


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed (it is a project dependency), else on the stock loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--nkeys", type=int, default=0)
    ap.add_argument("--body", default="1")
    ap.add_argument("--conc", type=int, default=1)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--total", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--idfile", default=None, help="append invocation ids of 2xx responses here")
    a = ap.parse_args(argv)
    if a.duration is None and a.total is None:
        ap.error("give --duration or --total")
    with contextlib.ExitStack() as stack:
        on_ok = None
        if a.idfile:
            on_ok = _id_writer(stack.enter_context(open(a.idfile, "w")))
        res = run_loop(
            run_load(a.url, a.path, a.nkeys, a.body, a.conc, a.duration, a.total, a.timeout, on_ok)
        )
    print("WRKJSON " + json.dumps(res.summary()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
