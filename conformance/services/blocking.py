"""AwakeableHolder, BlockAndWaitWorkflow, CancelTest*, KillTest*: call trees that block on purpose."""

from datetime import timedelta

from conformance.services._sdk import restate

holder = restate.VirtualObject("AwakeableHolder")
AWK_KEY = "awakeable-id"


@holder.handler()
async def hold(ctx: restate.ObjectContext, awakeable_id: str) -> None:
    ctx.set(AWK_KEY, awakeable_id)


@holder.handler(name="hasAwakeable")
async def has_awakeable(ctx: restate.ObjectContext) -> bool:
    return await ctx.get(AWK_KEY, type_hint=str) is not None


@holder.handler()
async def unlock(ctx: restate.ObjectContext, payload: str) -> None:
    awakeable_id = await ctx.get(AWK_KEY, type_hint=str)
    if awakeable_id is None:
        raise restate.TerminalError("No awakeable registered", status_code=404)
    ctx.resolve_awakeable(awakeable_id, payload)


workflow = restate.Workflow("BlockAndWaitWorkflow")
PROMISE = "durable-promise"


@workflow.main()
async def run(ctx: restate.WorkflowContext, value: str) -> str:
    ctx.set("my-state", value)
    output: str = await ctx.promise(PROMISE, type_hint=str).value()
    if await ctx.promise(PROMISE, type_hint=str).peek() is None:
        raise restate.TerminalError("durable promise should be completed by now")
    return output


@workflow.handler()
async def unblock(ctx: restate.WorkflowSharedContext, output: str) -> None:
    await ctx.promise(PROMISE, type_hint=str).resolve(output)


@workflow.handler(name="getState")
async def get_state(ctx: restate.WorkflowSharedContext) -> str | None:
    value: str | None = await ctx.get("my-state", type_hint=str)
    return value


cancel_runner = restate.VirtualObject("CancelTestRunner")
cancel_blocking = restate.VirtualObject("CancelTestBlockingService")


@cancel_runner.handler(name="startTest")
async def start_test(ctx: restate.ObjectContext, operation: str) -> None:
    try:
        await ctx.object_call(block, key=ctx.key(), arg=operation)
    except restate.TerminalError as e:
        if e.status_code != 409:
            raise
        ctx.set("state", True)


@cancel_runner.handler(name="verifyTest")
async def verify_test(ctx: restate.ObjectContext) -> bool:
    return await ctx.get("state", type_hint=bool) or False


@cancel_blocking.handler()
async def block(ctx: restate.ObjectContext, operation: str) -> None:
    awakeable_id, awakeable = ctx.awakeable(type_hint=str)
    await ctx.object_call(hold, key=ctx.key(), arg=awakeable_id)
    await awakeable
    if operation == "CALL":
        # Same key: the call waits in this object's inbox behind ourselves, forever.
        await ctx.object_call(block, key=ctx.key(), arg=operation)
    elif operation == "SLEEP":
        await ctx.sleep(timedelta(days=1024))
    elif operation == "AWAKEABLE":
        _, never = ctx.awakeable(type_hint=str)
        await never
    else:
        raise restate.TerminalError(f"unknown operation {operation!r}", status_code=400)


@cancel_blocking.handler(name="isUnlocked")
async def cancel_is_unlocked(ctx: restate.ObjectContext) -> None:
    return None


kill_runner = restate.VirtualObject("KillTestRunner")
kill_singleton = restate.VirtualObject("KillTestSingleton")


@kill_runner.handler(name="startCallTree")
async def start_call_tree(ctx: restate.ObjectContext) -> None:
    await ctx.object_call(recursive_call, key=ctx.key(), arg=None)


@kill_singleton.handler(name="recursiveCall")
async def recursive_call(ctx: restate.ObjectContext) -> None:
    awakeable_id, awakeable = ctx.awakeable(type_hint=str)
    ctx.object_send(hold, key=ctx.key(), arg=awakeable_id)
    await awakeable
    await ctx.object_call(recursive_call, key=ctx.key(), arg=None)


@kill_singleton.handler(name="isUnlocked")
async def kill_is_unlocked(ctx: restate.ObjectContext) -> None:
    return None


SERVICES = [holder, workflow, cancel_runner, cancel_blocking, kill_runner, kill_singleton]
