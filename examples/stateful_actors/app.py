"""Stateful actors: a virtual object per machine; its transitions run one at a time per machine key."""

from __future__ import annotations

import os
from datetime import timedelta

import pyrestate.sdk as restate
from examples.effects import record
from pyrestate.sdk import ObjectContext

# Bringing a machine up or down takes a while (5 s by default; tests shorten it).
TRANSITION = timedelta(seconds=float(os.environ.get("TRANSITION_SECONDS", "5")))

machine_operator = restate.VirtualObject("machineOperator")


@machine_operator.handler("setUp")
async def set_up(ctx: ObjectContext) -> str:
    machine_id = ctx.key()
    if await ctx.get("status") == "UP":
        return f"{machine_id} is already up, so nothing to do"
    await transition(ctx, machine_id, "UP")
    ctx.set("status", "UP")
    return f"{machine_id} is now up"


@machine_operator.handler("tearDown")
async def tear_down(ctx: ObjectContext) -> str:
    machine_id = ctx.key()
    if await ctx.get("status") != "UP":
        return f"{machine_id} is not up, cannot tear down"
    await transition(ctx, machine_id, "DOWN")
    ctx.set("status", "DOWN")
    return f"{machine_id} is now down"


async def transition(ctx: ObjectContext, machine_id: str, target: str) -> None:
    # Durable execution: after a crash the transition resumes here with its progress, not from scratch.
    await ctx.run("begin", lambda: record(f"Beginning transition of {machine_id} to {target}"))
    await ctx.sleep(TRANSITION)
    await ctx.run("done", lambda: record(f"Done transitioning {machine_id} to {target}"))


app = restate.app([machine_operator])
