"""End to end on a real broker (tansu): package scans from the topic `package-locations` reach one
`packageTracker` object per package in the order produced, each joined once with the depot directory, and
the enriched history is read through the ingress."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from examples._harness import DeployFn, Deployment
from examples._kafka import KafkaBroker
from examples.package_tracking.app import DEPOTS
from pyrestate.testing import eventually

TOPIC = "package-locations"
ROUTE = [("AMS1", "arrived"), ("AMS1", "departed"), ("CGN2", "arrived"), ("PAR3", "delivered")]


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    return deploy("package_tracking")


def test_scans_are_enriched_in_order_and_queryable(
    kafka: KafkaBroker, dep: Deployment, runtime_admin_url: str
) -> None:
    kafka.create_topic(TOPIC, partitions=2)
    packages = [f"pkg-{i}-{uuid.uuid4().hex[:4]}" for i in range(3)]
    route = [{"depot": d, "event": e, "time": f"2024-05-0{n + 1}T08:00Z"} for n, (d, e) in enumerate(ROUTE)]
    scans = {p: list(route) for p in packages}
    # A depot the directory does not know is still recorded, with what the directory answers for it.
    scans[packages[0]].append({"depot": "XXX9", "event": "returned", "time": "2024-05-09T08:00Z"})
    with kafka.subscription(runtime_admin_url, TOPIC, "service://packageTracker/updateLocation"):
        # Interleaved across packages; each package's scans stay in order within its partition.
        kafka.produce(TOPIC, [(p, scans[p][n]) for n in range(5) for p in packages if n < len(scans[p])])
        total = sum(len(s) for s in scans.values())
        # The first consumer group join on tansu takes a while (up to ~30 s with the official server).
        dep.effects.wait_for(lambda lines: len(lines) >= total, timeout=120)

        def all_stored() -> dict[str, Any]:
            got = {p: dep.ingress.call_json("packageTracker", "get", key=p) for p in packages}
            assert all(len(got[p]["locations"]) == len(scans[p]) for p in packages), got
            return got

        got = eventually(all_stored, timeout=20)

    for p in packages:
        view = got[p]
        assert [loc["event"] for loc in view["locations"]] == [s["event"] for s in scans[p]]
        assert [loc["time"] for loc in view["locations"]] == [s["time"] for s in scans[p]]
        unknown = {"name": "depot XXX9", "city": "unknown", "country": "unknown"}
        for loc, scan in zip(view["locations"], scans[p], strict=True):
            assert loc["depot"] == {"code": scan["depot"], **DEPOTS.get(scan["depot"], unknown)}
    assert got[packages[1]]["status"] == "delivered"
    assert got[packages[1]]["lastSeen"] == "Paris Nord depot, Paris"
    assert got[packages[0]]["status"] == "returned"
    # One directory lookup per scan: the joins ran once each.
    assert len(dep.effects.matching("directory lookup: ")) == total
    assert dep.effects.count("directory lookup: XXX9") == 1
