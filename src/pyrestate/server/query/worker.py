"""Query worker process: reads (SQL, limits, Arrow tables) frames on stdin, answers on stdout.

It exits when stdin closes (the server went away) and, as a last resort, when a query runs far past its
deadline without the server having killed it.

Memory: each query may grow the data segment by `limits.memory_bytes` over what the worker holds once its
tables are loaded (RLIMIT_DATA). An allocation past it aborts the process (Rust aborts on allocation
failure); the server reads "memory allocation … failed" on stderr, answers 503 and starts a fresh worker.
A worker that keeps more than that after a query says so in its answer and exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import threading
from typing import Any

from pyrestate.server.query.runner import (
    QueryError,
    QueryLimits,
    execute,
    read_frame,
    table_from_ipc,
    table_to_ipc,
    write_frame,
)


def _watchdog(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, lambda: os._exit(3))
    timer.daemon = True
    timer.start()
    return timer


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
    while True:
        head = read_frame(inp)
        if head is None:
            return
        req: dict[str, Any] = json.loads(head)
        tables: dict[str, Any] = {}
        for name in req["tables"]:
            frame = read_frame(inp)
            if frame is None:
                return
            tables[name] = table_from_ipc(frame)
        limits = QueryLimits(**req["limits"])
        guard = _watchdog(limits.timeout_s * 2 + 5)
        _cap_data(limits.memory_bytes)
        body: bytes | None = None
        try:
            body = table_to_ipc(execute(tables, req["sql"], limits))
            reply: dict[str, Any] = {"ok": True}
        except QueryError as e:
            reply = {"ok": False, "status": e.status, "message": e.message}
        except Exception as e:
            reply = {"ok": False, "status": 500, "message": f"Datafusion error: Internal error: {e}"}
        finally:
            guard.cancel()
            _cap_data(None)  # lifted between queries: reading the next tables must not fail
        tables.clear()
        # A worker that kept more than a query's share retires (the server then starts a fresh one), so
        # memory cannot creep up query after query.
        retire = _data_bytes() > baseline + limits.memory_bytes + (len(body) if body else 0)
        write_frame(out, json.dumps({**reply, "retire": retire}).encode())
        if body is not None:
            write_frame(out, body)
        out.flush()
        if retire:
            return


if __name__ == "__main__":
    main()
