"""Official-SDK services for the metrics test: one that answers, one that always fails (retried)."""

from __future__ import annotations

import restate

greeter = restate.Service("MetricsGreeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello {name}!"


flaky = restate.Service("MetricsFlaky")


@flaky.handler()
async def fail(ctx: restate.Context) -> None:
    raise ValueError("not yet")  # not terminal: the server retries it


app = restate.app(services=[greeter, flaky])
