"""Services on the official SDK for the multi-worker tests. Every `ctx.run` appends a line to
$CLUSTER_SIDE_FILE ("exec <invocation id>:<step> <result>"), so a test can tell how often a step ran and
which result the handler saw ("seen ...")."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path

import restate

_SIDE = Path(os.environ.get("CLUSTER_SIDE_FILE", "/tmp/cluster-side"))


def _append(line: str) -> None:
    with _SIDE.open("a") as f:
        f.write(line + "\n")


leaf = restate.Service("Leaf")


@leaf.handler()
async def echo(ctx: restate.Context, text: str) -> str:
    return f"leaf:{text}"


@leaf.handler()
async def hang(ctx: restate.Context, ms: int) -> str:
    await ctx.sleep(timedelta(milliseconds=ms))
    return "woke"


acc = restate.VirtualObject("Acc")


@acc.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    total = (await ctx.get("total") or 0) + delta
    ctx.set("total", total)
    return total


@acc.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("total") or 0


@acc.handler()
async def chain(ctx: restate.ObjectContext, text: str) -> str:
    """VirtualObject -> Service, the middle of Front/chain."""
    n = (await ctx.get("chained") or 0) + 1
    ctx.set("chained", n)
    return await ctx.service_call(echo, arg=f"{ctx.key()}:{text}:{n}")


@acc.handler()
async def hang_chain(ctx: restate.ObjectContext, ms: int) -> str:
    return await ctx.service_call(hang, arg=ms)


front = restate.Service("Front")


@front.handler()
async def chain_to(ctx: restate.Context, key: str) -> str:
    """Service -> VirtualObject -> Service."""
    return await ctx.object_call(chain, key=key, arg="x")


@front.handler()
async def fan_add(ctx: restate.Context, keys: list[str]) -> int:
    """One-way sends to many objects, and a delayed one to each."""
    for k in keys:
        ctx.object_send(add, key=k, arg=1)
        ctx.object_send(add, key=k, arg=10, send_delay=timedelta(milliseconds=300))
    return len(keys)


@front.handler()
async def tree(ctx: restate.Context, key: str) -> str:
    """A call tree for kill: Front -> Acc(key).hang_chain -> Leaf.hang."""
    return await ctx.object_call(hang_chain, key=key, arg=600_000)


@front.handler()
async def steps(ctx: restate.Context, tag: str) -> int:
    """Steps whose results are recorded once: each run's result is written to the side file."""
    total = 0
    for i in range(3):
        token = f"{ctx.request().id}:{i}"

        async def step(token: str = token) -> str:
            result = uuid.uuid4().hex
            _append(f"exec {token} {result}")
            return result

        result = await ctx.run_typed(f"step-{i}", step)
        _append(f"seen {token} {result}")
        total += len(result)
        await ctx.object_call(add, key=tag, arg=1)
    return total


@front.handler()
async def await_awakeable(ctx: restate.Context, tag: str) -> str:
    name, promise = ctx.awakeable(type_hint=str)

    async def publish() -> None:
        (_SIDE.parent / f"awakeable-{tag}").write_text(name)

    await ctx.run_typed("publish", publish)
    return f"got {await promise}"


wf = restate.Workflow("Flow")


@wf.main()
async def run(ctx: restate.WorkflowContext, req: str) -> str:
    return f"{req} approved by {await ctx.promise('approval', type_hint=str).value()}"


@wf.handler()
async def approve(ctx: restate.WorkflowSharedContext, who: str) -> None:
    await ctx.promise("approval", type_hint=str).resolve(who)


app = restate.app(services=[leaf, acc, front, wf])
