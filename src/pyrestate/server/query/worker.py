"""Query worker process: reads (SQL, limits, Arrow tables) frames on stdin, answers on stdout.

It exits when stdin closes (the server went away) and, as a last resort, when a query runs far past its
deadline without the server having killed it.

Memory: each query may grow the data segment by `limits.memory_bytes` over what the worker holds once its
tables are loaded (RLIMIT_DATA). An allocation past it aborts the process (Rust aborts on allocation
failure); the server reads "memory allocation … failed" on stderr, answers 503 and starts a fresh worker.
A worker that keeps more than that after a query says so in its answer and exits.

The tables of the last query stay registered (up to `_KEEP_BYTES`), so the next query over unchanged
tables neither receives them again nor re-registers them; the server learns which ones from each answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import threading
import time
from typing import Any

import pyarrow as pa

from pyrestate.server.query.runner import (
    QueryError,
    QueryLimits,
    execute,
    kept_digests,
    read_frame,
    table_from_ipc,
    table_to_ipc,
    write_frame,
)

# Tables kept registered between queries, at most this much (and a quarter of a query's memory share).
_KEEP_BYTES = 32 * 1024 * 1024


class _Watchdog:
    """One thread for the worker's life (not one per query): exits the process when a query it was armed
    for is still running past its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._deadline: float | None = None
        threading.Thread(target=self._run, name="query-watchdog", daemon=True).start()

    def arm(self, seconds: float) -> None:
        with self._cond:
            self._deadline = time.monotonic() + seconds
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None

    def _run(self) -> None:
        with self._cond:
            while True:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left <= 0:
                    os._exit(3)
                self._cond.wait(left)


def _data_bytes() -> int:
    """Size of the data segment, what RLIMIT_DATA bounds (VmData)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def _cap_data(extra: int | None) -> None:
    """Soft RLIMIT_DATA at today's size + `extra` (None: back to the hard limit)."""
    with contextlib.suppress(OSError, ValueError):
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        soft = hard if extra is None else _data_bytes() + extra
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the real stdout
    # DataFusion reserves its runtime on first use: measure the baseline after that, not before.
    execute({}, "SELECT 1", QueryLimits())
    baseline = _data_bytes()
    watchdog = _Watchdog()
    cache: dict[
        str, tuple[str, pa.Table]
    ] = {}  # the last query's tables still registered: name -> digest, table
    while True:
        head = read_frame(inp)
        if head is None:
            return
        req: dict[str, Any] = json.loads(head)
        digests: dict[str, str] = req["tables"]
        sent: dict[str, pa.Table] = {}
        for name in req["send"]:
            frame = read_frame(inp)
            if frame is None:
                return
            sent[name] = table_from_ipc(frame)
        limits = QueryLimits(**req["limits"])
        tables: dict[str, pa.Table] = {}
        for name, d in digests.items():
            held = cache.get(name)
            table = sent.get(name, held[1] if held is not None and held[0] == d else None)
            if table is not None:
                tables[name] = table
        cache.clear()
        sent.clear()
        keep = sum(t.nbytes for t in tables.values()) <= min(_KEEP_BYTES, limits.memory_bytes // 4)
        watchdog.arm(limits.timeout_s * 2 + 5)
        _cap_data(limits.memory_bytes)
        body: bytes | None = None
        try:
            if len(tables) < len(digests):  # the server believed this worker held a table it does not
                raise QueryError(500, "Datafusion error: Internal error: a query table was not sent")
            body = table_to_ipc(execute(tables, req["sql"], limits, digests, keep))
            reply: dict[str, Any] = {"ok": True}
        except QueryError as e:
            reply = {"ok": False, "status": e.status, "message": e.message}
        except Exception as e:
            reply = {"ok": False, "status": 500, "message": f"Datafusion error: Internal error: {e}"}
        finally:
            watchdog.disarm()
            _cap_data(None)  # lifted between queries: reading the next tables must not fail
        kept = kept_digests(limits)
        if kept is not None:
            cache = {name: (digests[name], table) for name, table in tables.items()}
        kept_bytes = sum(t.nbytes for _, t in cache.values())
        tables.clear()
        # A worker that kept more than a query's share (besides the tables it keeps on purpose) retires (the
        # server then starts a fresh one), so memory cannot creep up query after query.
        retire = _data_bytes() > baseline + limits.memory_bytes + kept_bytes + (len(body) if body else 0)
        cached = {} if retire else {name: d for name, (d, _) in cache.items()}
        write_frame(out, json.dumps({**reply, "retire": retire, "cached": cached}).encode())
        if body is not None:
            write_frame(out, body)
        out.flush()
        if retire:
            return


if __name__ == "__main__":
    main()
