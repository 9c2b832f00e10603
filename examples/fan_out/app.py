"""Fan-out / fan-in: split a task, run the subtasks in parallel as durable calls, aggregate the results."""

from __future__ import annotations

import os
from datetime import timedelta

import pyrestate.sdk as restate
from examples.effects import record
from pyrestate.sdk import Context

# How long a subtask works (plus up to half of it again, so they finish at different times).
SUBTASK_SECONDS = float(os.environ.get("SUBTASK_SECONDS", "2"))

worker_service = restate.Service("worker")


@worker_service.handler()
async def run(ctx: Context, task: dict[str, str]) -> str:
    # Split the task in subtasks (journaled, so a retry sees the same split).
    subtasks = await ctx.run("split task", lambda: split(task))

    # Fan out: every call is durable; Restate runs each subtask to completion exactly once.
    result_promises = [ctx.service_call(run_subtask, arg=subtask) for subtask in subtasks]

    # Fan in: the calls' results are durable promises, recoverable by a new process after a crash.
    results = [await promise for promise in result_promises]
    return aggregate(results)


@worker_service.handler("runSubtask")
async def run_subtask(ctx: Context, subtask: str) -> str:
    await ctx.run("start", lambda: record(f"Started executing subtask: {subtask}"))
    # The processing: a durable timer stands in for work that takes a while.
    await ctx.sleep(timedelta(seconds=SUBTASK_SECONDS * (1 + ctx.random().random() / 2)))
    await ctx.run("finish", lambda: record(f"Execution subtask finished: {subtask}"))
    return f"{subtask}: DONE"


def split(task: dict[str, str]) -> list[str]:
    parts = task["description"].split(",")
    record(f"Split task into {len(parts)} subtasks")
    return parts


def aggregate(results: list[str]) -> str:
    result = ",".join(results)
    print(f"Aggregated result: {result}", flush=True)
    return result


app = restate.app([worker_service])
