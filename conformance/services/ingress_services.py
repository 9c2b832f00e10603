"""Services of the ingress scenarios: ShortRetentionCounter (idempotency records that expire),
PrivateService (not reachable from ingress) and RawAwakeable (an awakeable carrying raw bytes)."""

from datetime import timedelta

from conformance.services._sdk import restate, serde

# Short enough that a scenario can watch an idempotency record expire.
RETENTION = timedelta(seconds=2)
short_retention = restate.VirtualObject("ShortRetentionCounter", idempotency_retention=RETENTION)


@short_retention.handler()
async def add(ctx: restate.ObjectContext, value: int) -> dict[str, int]:
    old = await ctx.get("counter", type_hint=int) or 0
    ctx.set("counter", old + value)
    return {"oldValue": old, "newValue": old + value}


private = restate.Service("PrivateService", ingress_private=True)


@private.handler()
async def echo(ctx: restate.Context, value: str) -> str:
    return value


raw_awakeable = restate.VirtualObject("RawAwakeable")
RAW_ID = "awakeable-id"


@raw_awakeable.handler(
    name="awaitRaw", content_type="application/octet-stream", output_serde=serde.BytesSerde()
)
async def await_raw(ctx: restate.ObjectContext) -> bytes:
    """Awaits an awakeable whose payload is raw bytes, returned unchanged."""
    awakeable_id, awakeable = ctx.awakeable(serde=serde.BytesSerde())
    ctx.set(RAW_ID, awakeable_id)
    value: bytes = await awakeable
    return value


@raw_awakeable.handler(name="awakeableId", kind="shared")
async def awakeable_id(ctx: restate.ObjectSharedContext) -> str | None:
    value: str | None = await ctx.get(RAW_ID, type_hint=str)
    return value


SERVICES = [short_retention, private, raw_awakeable]
