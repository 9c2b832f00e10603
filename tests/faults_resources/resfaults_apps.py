"""Deployments that misbehave: an SDK app wrapped by an ASGI layer that answers some handlers with garbage
frames, a wrong content type, HTTP 500 or too late. Discovery and the `ok` handler reach the real SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import pyrestate.sdk as restate

faulty = restate.Service("FaultSvc")


@faulty.handler()
async def ok(ctx: restate.Context, name: str) -> str:
    return f"ok {name}"


# The wrapper answers these itself; the SDK only advertises them in discovery.
@faulty.handler()
async def garbage(ctx: restate.Context, name: str) -> str:
    return name


@faulty.handler()
async def wrongct(ctx: restate.Context, name: str) -> str:
    return name


@faulty.handler()
async def http500(ctx: restate.Context, name: str) -> str:
    return name


@faulty.handler()
async def slow(ctx: restate.Context, name: str) -> str:
    return name


counter = restate.VirtualObject("DiskCounter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count") or 0) + delta
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count") or 0


sdk_app = restate.app([faulty])
counter_app = restate.app([counter])


def faulty_app(slow_seconds: float) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        mode = path.rsplit("/", 1)[-1] if path.startswith("/invoke/FaultSvc/") else "ok"
        if mode == "ok":
            await sdk_app(scope, receive, send)
            return
        if mode == "slow":
            await asyncio.sleep(slow_seconds)
        # Garbage under the very content type the server asked for, so only the frames are wrong.
        asked = dict(scope["headers"]).get(b"content-type", b"")
        status, ct, body = {
            "garbage": (200, asked, b"\x04\x01garbage-frames\xff" * 3),
            "wrongct": (200, b"text/html", b"<html>a proxy error page</html>"),
            "http500": (500, b"text/plain", b"upstream exploded"),
            "slow": (200, b"text/plain", b"too late"),
        }[mode]
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ct)]})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return app


# Payloads over the server's limits (tests/faults_resources/test_limits.py).
limits_obj = restate.VirtualObject("LimitsObj")


@limits_obj.handler()
async def set_value(ctx: restate.ObjectContext, size: int) -> int:
    ctx.set("value", "x" * size)
    return size


@limits_obj.handler(kind="shared")
async def value_size(ctx: restate.ObjectSharedContext) -> int:
    return len(await ctx.get("value") or "")


@limits_obj.handler(kind="shared")
async def echo(ctx: restate.ObjectSharedContext, n: int) -> int:
    return n


limits_svc = restate.Service("LimitsSvc")


@limits_svc.handler()
async def output(ctx: restate.Context, size: int) -> str:
    return "x" * size


@limits_svc.handler()
async def call_key(ctx: restate.Context, size: int) -> str:
    try:
        return str(await ctx.object_call(echo, key="k" * size, arg=size))
    except restate.TerminalError as e:
        return f"{e.status_code}: {e.message}"


limits_app = restate.app([limits_obj, limits_svc])
