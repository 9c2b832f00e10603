"""Failing and NonDeterministic: errors, retries and replay divergence."""

from collections import defaultdict
from datetime import timedelta
from typing import Any

from conformance.services._sdk import restate
from conformance.services.state_services import add as counter_add
from conformance.services.state_services import get as counter_get
from conformance.services.state_services import reset as counter_reset

failing = restate.VirtualObject("Failing")

# Process-global on purpose: these count attempts across retries of one invocation (or key), which a
# durable value could not do. Keyed so concurrent tests do not share counters.
_eventual_success: dict[str, int] = defaultdict(int)
_run_attempts: dict[str, int] = defaultdict(int)


def _terminal(req: dict[str, Any]) -> Exception:
    return restate.TerminalError(req["errorMessage"], metadata=req.get("metadata"))


@failing.handler(name="terminallyFailingCall")
async def terminally_failing_call(ctx: restate.ObjectContext, req: dict[str, Any]) -> None:
    raise _terminal(req)


@failing.handler(name="callTerminallyFailingCall")
async def call_terminally_failing_call(ctx: restate.ObjectContext, req: dict[str, Any]) -> str:
    await ctx.object_call(terminally_failing_call, key=str(ctx.uuid()), arg=req)
    raise restate.TerminalError("the call above must have failed", status_code=599)


@failing.handler(name="failingCallWithEventualSuccess")
async def failing_call_with_eventual_success(ctx: restate.ObjectContext) -> int:
    _eventual_success[ctx.key()] += 1
    attempt = _eventual_success[ctx.key()]
    if attempt >= 4:
        _eventual_success[ctx.key()] = 0
        return attempt
    raise ValueError(f"failed attempt {attempt}")


@failing.handler(name="terminallyFailingSideEffect")
async def terminally_failing_side_effect(ctx: restate.ObjectContext, req: dict[str, Any]) -> None:
    def fail() -> None:
        raise _terminal(req)

    await ctx.run_typed("sideEffect", fail)
    raise restate.TerminalError("the run above must have failed", status_code=599)


def _fast_retry(max_attempts: int) -> Any:
    return restate.RunOptions(
        max_attempts=max_attempts,
        initial_retry_interval=timedelta(milliseconds=1),
        retry_interval_factor=1.0,
    )


@failing.handler(name="sideEffectSucceedsAfterGivenAttempts")
async def side_effect_succeeds_after_given_attempts(ctx: restate.ObjectContext, attempts: int) -> int:
    invocation = ctx.request().id

    def flaky() -> int:
        _run_attempts[invocation] += 1
        if _run_attempts[invocation] < attempts:
            raise ValueError(f"failed attempt {_run_attempts[invocation]}")
        return _run_attempts[invocation]

    result: int = await ctx.run_typed("flaky", flaky, _fast_retry(attempts + 1))
    return result


@failing.handler(name="sideEffectFailsAfterGivenAttempts")
async def side_effect_fails_after_given_attempts(ctx: restate.ObjectContext, attempts: int) -> int:
    invocation = ctx.request().id

    def always_fails() -> int:
        _run_attempts[invocation] += 1
        raise ValueError(f"failed attempt {_run_attempts[invocation]}")

    try:
        await ctx.run_typed("always-fails", always_fails, _fast_retry(attempts))
    except restate.TerminalError:
        return _run_attempts[invocation]
    raise restate.TerminalError("the run should have exhausted its attempts", status_code=599)


non_deterministic = restate.VirtualObject("NonDeterministic")
# Flips on every execution of a key, replays included: the second execution diverges from the journal.
_executions: dict[str, int] = defaultdict(int)


def _left(ctx: restate.ObjectContext) -> bool:
    _executions[ctx.key()] += 1
    return _executions[ctx.key()] % 2 == 1


async def _finish(ctx: restate.ObjectContext) -> None:
    await ctx.sleep(timedelta(milliseconds=100))
    # Reaching this send means the divergence went unnoticed.
    ctx.object_send(counter_add, key=ctx.key(), arg=1)


@non_deterministic.handler(name="eitherSleepOrCall")
async def either_sleep_or_call(ctx: restate.ObjectContext) -> None:
    if _left(ctx):
        await ctx.sleep(timedelta(milliseconds=100))
    else:
        await ctx.object_call(counter_get, key="abc", arg=None)
    await _finish(ctx)


@non_deterministic.handler(name="callDifferentMethod")
async def call_different_method(ctx: restate.ObjectContext) -> None:
    if _left(ctx):
        await ctx.object_call(counter_get, key="abc", arg=None)
    else:
        await ctx.object_call(counter_reset, key="abc", arg=None)
    await _finish(ctx)


@non_deterministic.handler(name="backgroundInvokeWithDifferentTargets")
async def background_invoke_with_different_targets(ctx: restate.ObjectContext) -> None:
    if _left(ctx):
        ctx.object_send(counter_get, key="abc", arg=None)
    else:
        ctx.object_send(counter_reset, key="abc", arg=None)
    await _finish(ctx)


@non_deterministic.handler(name="setDifferentKey")
async def set_different_key(ctx: restate.ObjectContext) -> None:
    if _left(ctx):
        ctx.set("a", "my-state")
    else:
        ctx.set("b", "my-state")
    await _finish(ctx)


SERVICES = [failing, non_deterministic]
