"""The same submitter written with the SDK's ingress client (`restate.create_client`).

    python -m examples.async_tasks.sdk_client <idempotency-key> '<task json>' [<delay-seconds>]

Note: `send_delay` is put on the wire as `?delay=<milliseconds>` without a unit (as the official SDK 1.3.0
does), which restate-server rejects with 400 "bad delay query parameter"; use `/send?delay=1s` over HTTP
(client.py) for delayed tasks.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from typing import Any

import pyrestate.sdk as restate
from examples.async_tasks.app import run_task

RESTATE_URL = os.environ.get("RESTATE_URL", "http://localhost:8080")


async def submit(task: dict[str, Any], idempotency_key: str, delay: timedelta | None = None) -> str:
    async with restate.create_client(RESTATE_URL) as client:
        handle = await client.service_send(run_task, task, send_delay=delay, idempotency_key=idempotency_key)
        return str(handle.invocation_id)


if __name__ == "__main__":
    key, task = sys.argv[1], json.loads(sys.argv[2])
    delay = timedelta(seconds=float(sys.argv[3])) if len(sys.argv) > 3 else None
    print(asyncio.run(submit(task, key, delay)))
