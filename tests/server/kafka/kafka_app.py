"""Services on the official SDK for the Kafka subscription tests: every invocation appends one JSON line
(invocation id, Kafka headers, body) to $KAFKA_APP_LOG, so a test counts invocations per record."""

from __future__ import annotations

import json
import os

import restate
from restate import Context, ObjectContext, Service, VirtualObject

LOG = os.environ.get("KAFKA_APP_LOG", "kafka_app.jsonl")


def _record(kind: str, ctx: Context | ObjectContext, body: object, key: str | None) -> None:
    req = ctx.request()
    line = json.dumps({"kind": kind, "id": req.id, "headers": req.headers, "body": body, "key": key})
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


sink = Service("Sink")


@sink.handler()
async def handle(ctx: Context, msg: dict) -> None:  # type: ignore[type-arg]
    _record("svc", ctx, msg, None)


obj = VirtualObject("Obj")


@obj.handler()
async def add(ctx: ObjectContext, msg: dict) -> None:  # type: ignore[type-arg]
    seen: list[object] = await ctx.get("seen") or []
    seen.append(msg)
    ctx.set("seen", seen)
    _record("obj", ctx, msg, ctx.key())


@obj.handler()
async def get(ctx: ObjectContext) -> list[object]:
    return await ctx.get("seen") or []


app = restate.app([sink, obj])
