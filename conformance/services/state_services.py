"""Counter, MapObject, ListObject: per-key state."""

from typing import Any

from conformance.services._sdk import restate

counter = restate.VirtualObject("Counter")

COUNTER_KEY = "counter"


@counter.handler()
async def add(ctx: restate.ObjectContext, value: int) -> dict[str, int]:
    old = await ctx.get(COUNTER_KEY, type_hint=int) or 0
    new = old + value
    ctx.set(COUNTER_KEY, new)
    return {"oldValue": old, "newValue": new}


@counter.handler(name="addThenFail")
async def add_then_fail(ctx: restate.ObjectContext, value: int) -> None:
    old = await ctx.get(COUNTER_KEY, type_hint=int) or 0
    ctx.set(COUNTER_KEY, old + value)
    # The write above must survive the terminal failure: a failure is not a rollback.
    raise restate.TerminalError(ctx.key())


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    value: int = await ctx.get(COUNTER_KEY, type_hint=int) or 0
    return value


@counter.handler()
async def reset(ctx: restate.ObjectContext) -> None:
    ctx.clear(COUNTER_KEY)


map_object = restate.VirtualObject("MapObject")


@map_object.handler(name="set")
async def map_set(ctx: restate.ObjectContext, entry: dict[str, str]) -> None:
    ctx.set(entry["key"], entry["value"])


@map_object.handler(name="get")
async def map_get(ctx: restate.ObjectContext, key: str) -> str:
    value: str = await ctx.get(key, type_hint=str) or ""
    return value


@map_object.handler(name="clearAll")
async def map_clear_all(ctx: restate.ObjectContext) -> list[dict[str, Any]]:
    entries = []
    for k in await ctx.state_keys():
        entries.append({"key": k, "value": await ctx.get(k, type_hint=str)})
    ctx.clear_all()
    return entries


list_object = restate.VirtualObject("ListObject")
LIST_KEY = "list"


@list_object.handler(name="append")
async def list_append(ctx: restate.ObjectContext, value: str) -> None:
    items: list[str] = await ctx.get(LIST_KEY, type_hint=list) or []
    ctx.set(LIST_KEY, [*items, value])


@list_object.handler(name="get")
async def list_get(ctx: restate.ObjectContext) -> list[str]:
    items: list[str] = await ctx.get(LIST_KEY, type_hint=list) or []
    return items


@list_object.handler(name="clear")
async def list_clear(ctx: restate.ObjectContext) -> list[str]:
    items: list[str] = await ctx.get(LIST_KEY, type_hint=list) or []
    ctx.clear(LIST_KEY)
    return items


SERVICES = [counter, map_object, list_object]
