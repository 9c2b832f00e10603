"""VirtualObjectCommandInterpreter: runs a list of commands over awakeables, sleeps, runs and signals.

Each command's result is appended to the `results` state; `interpretCommands` returns the last one.
"""

import asyncio
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from conformance.services._sdk import restate

interpreter = restate.VirtualObject("VirtualObjectCommandInterpreter")

RESULTS = "results"
# An awaitable command: the SDK future plus how to turn its value into the command's string result.
Pending = tuple[Any, Callable[[Any], str]]


def _awk_state(key: str) -> str:
    return f"awk-{key}"


def _identity(v: Any) -> str:
    return "" if v is None else str(v)


def _make(ctx: restate.ObjectContext, cmd: dict[str, Any]) -> Pending:
    kind = cmd["type"]
    if kind == "createAwakeable":
        awakeable_id, fut = ctx.awakeable(type_hint=str)
        ctx.set(_awk_state(cmd["awakeableKey"]), awakeable_id)
        return fut, _identity
    if kind == "sleep":
        return ctx.sleep(timedelta(milliseconds=cmd["timeoutMillis"])), lambda _: "sleep"
    if kind == "runReturns":
        value = cmd["value"]

        async def returns() -> str:
            await asyncio.sleep(0.01)  # real asynchronous work inside the run
            return str(value)

        return ctx.run_typed("runReturns", returns), _identity
    if kind == "runThrowTerminalException":
        reason = cmd["reason"]

        async def throws() -> str:
            raise restate.TerminalError(reason)

        return ctx.run_typed("runThrows", throws), _identity
    if kind == "createSignal":
        return ctx.signal(cmd["signalName"], type_hint=str), _identity
    raise restate.TerminalError(f"unknown awaitable command {kind!r}", status_code=400)


async def _value(p: Pending) -> str:
    fut, convert = p
    return convert(await fut)


async def _completed_in_order(pending: list[Pending]) -> Any:
    """Yield the pending commands in completion order (one SDK wait per step)."""
    by_future = {id(p[0]): p for p in pending}
    remaining = [p[0] for p in pending]
    while remaining:
        done, remaining = await restate.wait_completed(*remaining)
        for f in done:
            yield by_future[id(f)]


async def _await_first_success(pending: list[Pending]) -> tuple[str | None, list[str]]:
    errors: list[str] = []
    async for p in _completed_in_order(pending):
        try:
            return await _value(p), errors
        except restate.TerminalError as e:
            errors.append(e.message)
    return None, errors


async def _run_command(ctx: restate.ObjectContext, cmd: dict[str, Any]) -> str:
    kind = cmd["type"]
    if kind == "awaitOne":
        return await _value(_make(ctx, cmd["command"]))
    if kind in ("awaitAny", "awaitFirstCompleted"):
        pending = [_make(ctx, c) for c in cmd["commands"]]
        async for p in _completed_in_order(pending):
            return await _value(p)  # a failure of the first completed one propagates
    if kind == "awaitAnySuccessful":
        value, _ = await _await_first_success([_make(ctx, c) for c in cmd["commands"]])
        if value is None:
            raise restate.TerminalError("all commands failed")
        return value
    if kind == "awaitFirstSucceededOrAllFailed":
        value, errors = await _await_first_success([_make(ctx, c) for c in cmd["commands"]])
        if value is None:
            raise restate.TerminalError("all failed: " + "|".join(errors))
        return value
    if kind == "awaitAllSucceededOrFirstFailed":
        pending = [_make(ctx, c) for c in cmd["commands"]]
        async for p in _completed_in_order(pending):
            await _value(p)  # the first failure propagates
        return "|".join([await _value(p) for p in pending])
    if kind == "awaitAllCompleted":
        pending = [_make(ctx, c) for c in cmd["commands"]]
        await restate.gather(*[p[0] for p in pending])
        parts = []
        for p in pending:
            try:
                parts.append("ok:" + await _value(p))
            except restate.TerminalError as e:
                parts.append("err:" + e.message)
        return "|".join(parts)
    if kind == "awaitAwakeableOrTimeout":
        awakeable_id, awk = ctx.awakeable(type_hint=str)
        ctx.set(_awk_state(cmd["awakeableKey"]), awakeable_id)
        timeout = ctx.sleep(timedelta(milliseconds=cmd["timeoutMillis"]))
        match await restate.select(awakeable=awk, timeout=timeout):
            case ["awakeable", value]:
                return str(value)
            case _:
                raise restate.TerminalError("await-timeout", status_code=408)
    if kind == "resolveAwakeable":
        ctx.resolve_awakeable(await _awakeable_id(ctx, cmd["awakeableKey"]), cmd["value"])
        return ""
    if kind == "rejectAwakeable":
        ctx.reject_awakeable(await _awakeable_id(ctx, cmd["awakeableKey"]), cmd["reason"])
        return ""
    if kind == "getEnvVariable":
        name = cmd["envName"]

        def read_env() -> str:
            return os.environ.get(name, "")

        value: str = await ctx.run_typed("getEnv", read_env)
        return value
    raise restate.TerminalError(f"unknown command {kind!r}", status_code=400)


async def _awakeable_id(ctx: restate.ObjectContext | restate.ObjectSharedContext, key: str) -> str:
    awakeable_id = await ctx.get(_awk_state(key), type_hint=str)
    if awakeable_id is None:
        raise restate.TerminalError(f"awakeable {key!r} is not registered", status_code=404)
    result: str = awakeable_id
    return result


@interpreter.handler(name="interpretCommands")
async def interpret_commands(ctx: restate.ObjectContext, req: dict[str, Any]) -> str:
    last = ""
    for cmd in req["commands"]:
        last = await _run_command(ctx, cmd)
        results: list[str] = await ctx.get(RESULTS, type_hint=list) or []
        ctx.set(RESULTS, [*results, last])
    return last


@interpreter.handler(name="resolveAwakeable", kind="shared")
async def resolve_awakeable(ctx: restate.ObjectSharedContext, req: dict[str, Any]) -> None:
    ctx.resolve_awakeable(await _awakeable_id(ctx, req["awakeableKey"]), req["value"])


@interpreter.handler(name="rejectAwakeable", kind="shared")
async def reject_awakeable(ctx: restate.ObjectSharedContext, req: dict[str, Any]) -> None:
    ctx.reject_awakeable(await _awakeable_id(ctx, req["awakeableKey"]), req["reason"])


@interpreter.handler(name="hasAwakeable", kind="shared")
async def has_awakeable(ctx: restate.ObjectSharedContext, key: str) -> bool:
    return await ctx.get(_awk_state(key), type_hint=str) is not None


@interpreter.handler(name="getResults", kind="shared")
async def get_results(ctx: restate.ObjectSharedContext) -> list[str]:
    results: list[str] = await ctx.get(RESULTS, type_hint=list) or []
    return results


SERVICES = [interpreter]
