"""Async task queue: any handler becomes a durable, deduplicated, optionally delayed task via `/send`."""

from __future__ import annotations

from typing import Any

import pyrestate.sdk as restate
from examples.effects import record
from pyrestate.sdk import Context

async_task_service = restate.Service("taskWorker")


@async_task_service.handler("runTask")
async def run_task(ctx: Context, params: dict[str, Any]) -> str:
    # Journaled: a retry after a crash returns the stored result instead of doing the work again.
    return await ctx.run("heavy work", lambda: some_heavy_work(params))


def some_heavy_work(params: dict[str, Any]) -> str:
    record(f"task {params['id']} executed")
    return f"task {params['id']} done: {str(params.get('payload', '')).upper()}"


app = restate.app([async_task_service])
