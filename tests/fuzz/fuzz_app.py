"""Services the HTTP fuzz runs against. Every handler takes raw bytes, so no body can make an invocation
retry forever: bad input is a terminal failure, answered at once."""

from __future__ import annotations

import pyrestate.sdk as restate

_RAW = {"accept": "*/*", "input_serde": restate.BytesSerde(), "output_serde": restate.BytesSerde()}

echo = restate.Service("FuzzEcho")


@echo.handler("echo", **_RAW)  # type: ignore[arg-type]
async def echo_bytes(ctx: restate.Context, body: bytes) -> bytes:
    return body


def _int(body: bytes) -> int:
    try:
        return int(body.decode())
    except ValueError:
        raise restate.TerminalError("expected an integer", status_code=400) from None


counter = restate.VirtualObject("FuzzCounter")


@counter.handler("add", **_RAW)  # type: ignore[arg-type]
async def add(ctx: restate.ObjectContext, body: bytes) -> bytes:
    value = (await ctx.get("count") or 0) + _int(body)
    ctx.set("count", value)
    return str(value).encode()


@counter.handler("get", kind="shared", **_RAW)  # type: ignore[arg-type]
async def get(ctx: restate.ObjectSharedContext, body: bytes) -> bytes:
    return str(await ctx.get("count") or 0).encode()


# The admin fuzz may patch this service and overwrite its state: it is never read for integrity.
scratch = restate.VirtualObject("FuzzScratch")


@scratch.handler("poke", **_RAW)  # type: ignore[arg-type]
async def poke(ctx: restate.ObjectContext, body: bytes) -> bytes:
    ctx.set("last", body.decode("utf-8", "replace"))
    return body


app = restate.app([echo, counter, scratch])
