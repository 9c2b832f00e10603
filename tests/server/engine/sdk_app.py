"""Services on the official Python SDK used by the engine's end-to-end tests.

Side effects that tests must count are recorded as files under $SDK_TEST_DIR (the process outlives
attempts, files outlive nothing but are easy to read from the test)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import restate
from restate.exceptions import TerminalError

_DIR = Path(os.environ.get("SDK_TEST_DIR", "/tmp"))


def _bump(name: str) -> int:
    path = _DIR / name
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    return n


greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"hello {name}"


@greeter.handler()
async def fail(ctx: restate.Context, code: int) -> str:
    raise TerminalError("bad input", status_code=code)


@greeter.handler()
async def flaky(ctx: restate.Context, tag: str) -> str:
    n = _bump(f"flaky-{tag}")
    if n < 3:
        raise ValueError(f"attempt {n} fails")
    return f"succeeded on attempt {n}"


@greeter.handler()
async def run_once(ctx: restate.Context, tag: str) -> str:
    async def effect() -> int:
        return _bump(f"run-{tag}")

    value = await ctx.run_typed("effect", effect)
    attempts = _bump(f"attempt-{tag}")
    if attempts < 2:
        raise ValueError("fail after the run was journaled")
    return f"run value {value}"


@greeter.handler()
async def sleepy(ctx: restate.Context, ms: int) -> str:
    await ctx.sleep(timedelta(milliseconds=ms))
    return "slept"


@greeter.handler()
async def steps(ctx: restate.Context, tag: str) -> list[int]:
    """Five journaled steps with short sleeps between them: a long trail of commands and completions."""
    seen = []
    for i in range(5):

        async def effect(i: int = i) -> int:
            return _bump(f"step-{tag}-{i}")

        seen.append(await ctx.run_typed(f"step-{i}", effect))
        await ctx.sleep(timedelta(milliseconds=30))
    return seen


@greeter.handler()
async def square(ctx: restate.Context, n: int) -> int:
    return n * n


@greeter.handler()
async def fan_out(ctx: restate.Context, n: int) -> list[int]:
    parts = await ctx.run_typed("split", lambda: list(range(1, n + 1)))
    futures = [ctx.service_call(square, arg=p) for p in parts]
    await restate.gather(*futures)
    return [await f for f in futures]


@greeter.handler()
async def echo_headers(ctx: restate.Context) -> dict[str, str]:
    return dict(ctx.request().headers)


@greeter.handler()
async def spawn_and_attach(ctx: restate.Context, ms: int) -> list[str]:
    handle = ctx.service_send(sleepy, arg=ms)
    child = await handle.invocation_id()
    return [child, await ctx.attach_invocation(child, type_hint=str)]


@greeter.handler()
async def wait_signal(ctx: restate.Context, tag: str) -> str:
    async def publish() -> None:
        (_DIR / f"sig-{tag}").write_text(ctx.request().id)

    await ctx.run_typed("publish", publish)
    # The sender resolves the signal during this sleep: the value must be kept until it is awaited.
    await ctx.sleep(timedelta(milliseconds=300))
    return f"signalled {await ctx.signal('go', type_hint=str)}"


@greeter.handler()
async def send_signal(ctx: restate.Context, req: list[str]) -> None:
    ctx.resolve_signal(req[0], "go", req[1])


_VARIANT = os.environ.get("SDK_VARIANT", "v1")


@greeter.handler()
async def versioned(ctx: restate.Context, ms: int) -> str:
    if ms:
        await ctx.sleep(timedelta(milliseconds=ms))
    return _VARIANT


@greeter.handler()
async def broken_until_v2(ctx: restate.Context) -> str:
    if _VARIANT == "v1":
        raise ValueError("v1 cannot do this")
    return f"fixed by {_VARIANT}"


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count", type_hint=int)) or 0
    await ctx.sleep(timedelta(milliseconds=20))  # widens the window in which a second add could interleave
    value += delta
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return (await ctx.get("count", type_hint=int)) or 0


@counter.handler()
async def schedule_add(ctx: restate.ObjectContext, delay_ms: int) -> str:
    ctx.object_send(add, key=ctx.key(), arg=100, send_delay=timedelta(milliseconds=delay_ms))
    return "scheduled"


@greeter.handler()
async def await_awakeable(ctx: restate.Context, tag: str) -> str:
    awakeable_id, promise = ctx.awakeable(type_hint=str)

    async def publish() -> None:
        (_DIR / f"awk-{tag}").write_text(awakeable_id)

    await ctx.run_typed("publish", publish)
    return f"got {await promise}"


wf = restate.Workflow("Wf")


@wf.main()
async def run(ctx: restate.WorkflowContext, req: str) -> str:
    approval = await ctx.promise("approval", type_hint=str).value()
    return f"{req} approved by {approval}"


@wf.handler()
async def approve(ctx: restate.WorkflowSharedContext, who: str) -> str:
    await ctx.promise("approval", type_hint=str).resolve(who)
    return "ok"


app = restate.app(services=[greeter, counter, wf])
