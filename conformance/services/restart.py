"""Services of the restart-as-new scenarios: RestartSteps (two steps that count how often they really
ran, journal retained), RestartObject and RestartWorkflow (restarting a workflow is refused); RetryNow (a
first attempt that fails, then an hour of back-off) for resume's "retry now"."""

from collections import Counter
from datetime import timedelta
from typing import Any

from conformance.services._sdk import restate

RETAINED = timedelta(hours=1)
# How often each (key, step) really executed in this process: a replayed step does not count.
EXECUTIONS: Counter[str] = Counter()


def _execute(key: str, step: str) -> int:
    EXECUTIONS[f"{key}/{step}"] += 1
    return EXECUTIONS[f"{key}/{step}"]


steps = restate.Service("RestartSteps", journal_retention=RETAINED)


@steps.handler()
async def run(ctx: restate.Context, key: str) -> list[int]:
    one = await ctx.run_typed("one", _execute, key=key, step="one")
    two = await ctx.run_typed("two", _execute, key=key, step="two")
    return [one, two]


@steps.handler()
async def executions(ctx: restate.Context, key: str) -> dict[str, int]:
    return {step: EXECUTIONS[f"{key}/{step}"] for step in ("one", "two")}


obj = restate.VirtualObject("RestartObject", journal_retention=RETAINED)


@obj.handler()
async def bump(ctx: restate.ObjectContext) -> int:
    value = (await ctx.get("n", type_hint=int) or 0) + 1
    ctx.set("n", value)
    return value


workflow = restate.Workflow("RestartWorkflow", journal_retention=RETAINED)


@workflow.main(name="run")
async def wf_run(ctx: restate.WorkflowContext, value: Any) -> Any:
    return value



# Fails its first attempt and backs off for an hour: only a "retry now" (resume) gets it done in time.
retry_now = restate.Service(
    "RetryNow", invocation_retry_policy=restate.InvocationRetryPolicy(initial_interval=timedelta(hours=1))
)
ATTEMPTS: Counter[str] = Counter()


@retry_now.handler()
async def flaky(ctx: restate.Context, key: str) -> int:
    ATTEMPTS[key] += 1
    if ATTEMPTS[key] == 1:
        raise RuntimeError("first attempt fails")
    return ATTEMPTS[key]


SERVICES = [steps, obj, workflow, retry_now]
