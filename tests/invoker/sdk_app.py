"""A trivial service built with the official Python SDK, served by hypercorn in the tests."""

from __future__ import annotations

import restate

svc = restate.Service("Svc")


@svc.handler()
async def handler(ctx: restate.Context, name: str) -> str:
    return f"hello {name}"


app = restate.app(services=[svc])
