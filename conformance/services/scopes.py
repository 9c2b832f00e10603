"""Services of the protocol V7 scenarios: ScopeProxy calls and sends within a scope (`ctx.scope()`),
ScopeEcho answers with what its invocation was submitted with (`ctx.request()`)."""

import json
from typing import Any

from conformance.services._sdk import restate

echo_service = restate.Service("ScopeEcho")


@echo_service.handler()
async def echo(ctx: restate.Context, value: Any) -> dict[str, Any]:
    req = ctx.request()
    return {
        "value": value,
        "scope": req.scope,
        "limitKey": req.limit_key,
        "idempotencyKey": req.idempotency_key,
    }


proxy = restate.Service("ScopeProxy")


@proxy.handler(name="scopedCall")
async def scoped_call(ctx: restate.Context, req: dict[str, Any]) -> dict[str, Any]:
    scoped = ctx.scope(req["scope"])
    result: dict[str, Any] = await scoped.service_call(
        echo, req.get("value"), limit_key=req.get("limitKey"), idempotency_key=req.get("idempotencyKey")
    )
    return result


@proxy.handler(name="scopedSend")
async def scoped_send(ctx: restate.Context, req: dict[str, Any]) -> str:
    handle = ctx.scope(req["scope"]).service_send(echo, req.get("value"), limit_key=req.get("limitKey"))
    return await handle.invocation_id()


@proxy.handler(name="genericScopedCall")
async def generic_scoped_call(ctx: restate.Context, req: dict[str, Any]) -> dict[str, Any]:
    raw = await ctx.generic_call(
        "ScopeEcho", "echo", b'"generic"', scope=req["scope"], limit_key=req.get("limitKey")
    )
    answer: dict[str, Any] = json.loads(raw)
    return answer


@proxy.handler()
async def me(ctx: restate.Context) -> dict[str, Any]:
    req = ctx.request()
    return {"id": req.id, "idempotencyKey": req.idempotency_key, "scope": req.scope}


SERVICES = [echo_service, proxy]
