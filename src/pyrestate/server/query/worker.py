"""Query worker process: reads (SQL, limits, Arrow tables) frames on stdin, answers on stdout.

It exits when stdin closes (the server went away) and, as a last resort, when a query runs far past its
deadline without the server having killed it.
"""

from __future__ import annotations

import json
import os
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


def main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the real stdout
    while True:
        head = read_frame(inp)
        if head is None:
            return
        req: dict[str, Any] = json.loads(head)
        tables = {}
        for name in req["tables"]:
            frame = read_frame(inp)
            if frame is None:
                return
            tables[name] = table_from_ipc(frame)
        limits = QueryLimits(**req["limits"])
        guard = _watchdog(limits.timeout_s * 2 + 5)
        try:
            result = execute(tables, req["sql"], limits)
            body = table_to_ipc(result)
            write_frame(out, json.dumps({"ok": True}).encode())
            write_frame(out, body)
        except QueryError as e:
            write_frame(out, json.dumps({"ok": False, "status": e.status, "message": e.message}).encode())
        except Exception as e:
            message = f"Datafusion error: Internal error: {e}"
            write_frame(out, json.dumps({"ok": False, "status": 500, "message": message}).encode())
        finally:
            guard.cancel()
        out.flush()


if __name__ == "__main__":
    main()
