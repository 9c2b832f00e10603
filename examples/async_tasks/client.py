"""The task submitter: schedules tasks over HTTP and latches on to them by idempotency key.

    python -m examples.async_tasks.client submit <idempotency-key> '<task json>' [--delay 1s]
    python -m examples.async_tasks.client attach <idempotency-key>
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import httpx

RESTATE_URL = os.environ.get("RESTATE_URL", "http://localhost:8080")


def submit(task: dict[str, Any], idempotency_key: str, delay: str | None = None) -> dict[str, Any]:
    """Enqueue `taskWorker/runTask`; answers {"invocationId", "status"} without waiting for the task."""
    r = httpx.post(
        f"{RESTATE_URL}/taskWorker/runTask/send",
        json=task,
        params={"delay": delay} if delay else None,
        headers={"idempotency-key": idempotency_key},
    )
    r.raise_for_status()
    result: dict[str, Any] = r.json()
    return result


def attach(idempotency_key: str, timeout: float = 60.0) -> Any:
    """Wait for the task scheduled with this idempotency key and return its result."""
    r = httpx.get(f"{RESTATE_URL}/restate/invocation/taskWorker/runTask/{idempotency_key}/attach",
                  timeout=timeout)
    r.raise_for_status()
    return r.json()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit")
    s.add_argument("key")
    s.add_argument("task")
    s.add_argument("--delay")
    a = sub.add_parser("attach")
    a.add_argument("key")
    args = parser.parse_args()
    if args.command == "submit":
        print(json.dumps(submit(json.loads(args.task), args.key, args.delay)))
    else:
        print(json.dumps(attach(args.key)))


if __name__ == "__main__":
    main()
