"""Service of the flow-control scenarios: Limited.work sleeps (in the handler, so the invocation keeps
running) and counts how many of its invocations run at once in this process; Limited.stats reads the count
and the order in which invocations entered; Limited.nap sleeps durably (it suspends in the suspending
profile); Limited.flaky fails its first attempts."""

import asyncio
from datetime import timedelta
from typing import Any

from conformance.services._sdk import restate

limited = restate.Service("Limited")
_state: dict[str, Any] = {"current": 0, "max": 0, "entered": []}


@limited.handler()
async def work(ctx: restate.Context, req: dict[str, Any]) -> int:
    _state["current"] += 1
    _state["max"] = max(_state["max"], _state["current"])
    _state["entered"].append(req["n"])
    try:
        await asyncio.sleep(req.get("ms", 100) / 1000)
    finally:
        _state["current"] -= 1
    return int(req["n"])


@limited.handler()
async def flaky(ctx: restate.Context, req: dict[str, Any]) -> int:
    """Fails its first `fails` attempts (a retryable error), then returns `n`."""
    seen = _state.setdefault("attempts", {})
    seen[req["n"]] = seen.get(req["n"], 0) + 1
    _state["entered"].append(req["n"])
    if seen[req["n"]] <= req.get("fails", 1):
        raise RuntimeError(f"attempt {seen[req['n']]} of {req['n']} fails")
    return int(req["n"])


@limited.handler()
async def stats(ctx: restate.Context) -> dict[str, Any]:
    return {"current": _state["current"], "max": _state["max"], "entered": list(_state["entered"])}


@limited.handler()
async def reset(ctx: restate.Context) -> None:
    _state.update(current=0, max=0, entered=[])


@limited.handler()
async def nap(ctx: restate.Context, ms: int) -> int:
    await ctx.sleep(timedelta(milliseconds=ms))
    return ms


SERVICES = [limited]
