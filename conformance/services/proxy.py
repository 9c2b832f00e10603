"""Proxy: generic (raw-bytes) calls and sends described by a JSON request, and TestUtilsService."""

import asyncio
from datetime import timedelta
from typing import Any

from conformance.services._sdk import restate, serde

proxy = restate.Service("Proxy")


def _target(req: dict[str, Any]) -> dict[str, Any]:
    return {
        "service": req["serviceName"],
        "handler": req["handlerName"],
        "arg": bytes(req["message"]),
        "key": req.get("virtualObjectKey"),
        "idempotency_key": req.get("idempotencyKey"),
    }


def _send(ctx: restate.Context, req: dict[str, Any]) -> Any:
    delay = req.get("delayMillis")
    return ctx.generic_send(**_target(req), send_delay=timedelta(milliseconds=delay) if delay else None)


@proxy.handler()
async def call(ctx: restate.Context, req: dict[str, Any]) -> list[int]:
    result: bytes = await ctx.generic_call(**_target(req))
    return list(result)


@proxy.handler(name="oneWayCall")
async def one_way_call(ctx: restate.Context, req: dict[str, Any]) -> str:
    handle = _send(ctx, req)
    invocation_id: str = await handle.invocation_id()
    return invocation_id


@proxy.handler(name="manyCalls")
async def many_calls(ctx: restate.Context, requests: list[dict[str, Any]]) -> None:
    to_await = []
    for r in requests:
        if r["oneWayCall"]:
            _send(ctx, r["proxyRequest"])
        else:
            fut = ctx.generic_call(**_target(r["proxyRequest"]))
            if r["awaitAtTheEnd"]:
                to_await.append(fut)
    for fut in to_await:
        await fut


utils = restate.Service("TestUtilsService")


@utils.handler()
async def echo(ctx: restate.Context, value: str) -> str:
    return value


@utils.handler(name="uppercaseEcho")
async def uppercase_echo(ctx: restate.Context, value: str) -> str:
    return value.upper()


@utils.handler(name="echoHeaders")
async def echo_headers(ctx: restate.Context) -> dict[str, str]:
    return dict(ctx.request().headers)


@utils.handler(
    name="rawEcho",
    accept="*/*",
    content_type="application/octet-stream",
    input_serde=serde.BytesSerde(),
    output_serde=serde.BytesSerde(),
)
async def raw_echo(ctx: restate.Context, value: bytes) -> bytes:
    return value


@utils.handler(name="countExecutedSideEffects")
async def count_executed_side_effects(ctx: restate.Context, increments: int) -> int:
    # Deliberately non-durable: counts only the runs this attempt actually executed, so a replayed
    # (already acknowledged) run does not count.
    executed = 0

    async def bump() -> None:
        nonlocal executed
        executed += 1
        await asyncio.sleep(0)

    for _ in range(increments):
        await ctx.run_typed("count", bump)
    return executed


@utils.handler(name="cancelInvocation")
async def cancel_invocation(ctx: restate.Context, invocation_id: str) -> None:
    ctx.cancel_invocation(invocation_id)


@utils.handler(name="resolveSignal")
async def resolve_signal(ctx: restate.Context, req: dict[str, Any]) -> None:
    ctx.resolve_signal(req["invocationId"], req["signalName"], req["value"])


@utils.handler(name="rejectSignal")
async def reject_signal(ctx: restate.Context, req: dict[str, Any]) -> None:
    ctx.reject_signal(req["invocationId"], req["signalName"], req["reason"])


SERVICES = [proxy, utils]
