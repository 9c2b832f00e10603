"""Event enrichment from Kafka: package scans arrive on the topic `package-locations`, keyed by package id.
A subscription sends them to `packageTracker/updateLocation`, a virtual object per package, so one package's
scans are applied one at a time in the order they were produced. Each scan carries only a depot code; it is
joined with the depot's details from `depotDirectory`, another Restate service, before it is stored, and
`get` returns the enriched history of a package."""

from __future__ import annotations

from typing import Any

import pyrestate.sdk as restate
from examples.effects import record
from pyrestate.sdk import Context, ObjectContext, ObjectSharedContext

Scan = dict[str, Any]  # the Kafka record: {"depot": "AMS1", "event": "arrived", "time": "2024-05-01T08:00Z"}
Depot = dict[str, str]  # {"code", "name", "city", "country"}

# The reference data a real directory (a database, a partner's API) would hold.
DEPOTS: dict[str, Depot] = {
    "AMS1": {"name": "Schiphol hub", "city": "Amsterdam", "country": "NL"},
    "CGN2": {"name": "Cologne sorting centre", "city": "Cologne", "country": "DE"},
    "BRU1": {"name": "Brussels depot", "city": "Brussels", "country": "BE"},
    "PAR3": {"name": "Paris Nord depot", "city": "Paris", "country": "FR"},
}

package_tracker = restate.VirtualObject("packageTracker")
depot_directory = restate.Service("depotDirectory")


@depot_directory.handler()
async def lookup(ctx: Context, code: str) -> Depot:
    return await ctx.run("query directory", lambda: query_directory(code))


@package_tracker.handler("updateLocation")
async def update_location(ctx: ObjectContext, scan: Scan) -> None:
    # The join: the call and its answer are journaled, so a retried scan is not looked up again.
    depot = await ctx.service_call(lookup, arg=scan["depot"])
    locations: list[dict[str, Any]] = await ctx.get("locations") or []
    locations.append({"time": scan["time"], "event": scan["event"], "depot": depot})
    ctx.set("locations", locations)


@package_tracker.handler("get", kind="shared")
async def get(ctx: ObjectSharedContext) -> dict[str, Any]:
    locations: list[dict[str, Any]] = await ctx.get("locations") or []
    last = locations[-1] if locations else None
    return {
        "package": ctx.key(),
        "status": last["event"] if last else "unknown",
        "lastSeen": f"{last['depot']['name']}, {last['depot']['city']}" if last else None,
        "locations": locations,
    }


def query_directory(code: str) -> Depot:
    record(f"directory lookup: {code}")
    known = DEPOTS.get(code, {"name": f"depot {code}", "city": "unknown", "country": "unknown"})
    return {"code": code, **known}


app = restate.app([package_tracker, depot_directory])
