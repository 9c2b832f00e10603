"""End to end: never more than N in flight; queued work is admitted by priority."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from examples._harness import DeployFn, Deployment
from pyrestate.testing import eventually, json_of

N = 2


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    return deploy("priority_queue", env={"QUEUE_MAX_IN_FLIGHT": str(N)})


def submit(dep: Deployment, tag: str, priority: int, seconds: float) -> str:
    body = {"left": 1, "right": 2, "priority": priority, "tag": tag, "seconds": seconds}
    return str(dep.ingress.send_json("myService", "expensiveMethod", body)["invocationId"])


def queue_status(dep: Deployment) -> dict[str, Any]:
    result: dict[str, Any] = json_of(dep.ingress.call("queue", "status", key="myService"))
    return result


def test_at_most_n_in_flight_and_queued_items_by_priority(dep: Deployment) -> None:
    run = uuid.uuid4().hex[:6]
    # Two long calls take both slots; then low and high priority calls queue up behind them.
    invocations = [submit(dep, f"{run}-long{i}", 1, 1.5) for i in range(N)]
    dep.effects.wait_for(lambda lines: sum(line.startswith(f"start {run}-long") for line in lines) == N)
    waiting = [("low1", 1), ("high1", 5), ("low2", 1), ("high2", 5), ("mid", 3)]
    invocations += [submit(dep, f"{run}-{tag}", prio, 0.1) for tag, prio in waiting]

    def all_queued() -> None:
        assert queue_status(dep) == {"inFlight": N, "queued": len(waiting)}

    eventually(all_queued, timeout=10)
    assert [json_of(dep.ingress.attach(inv)) for inv in invocations] == [3] * len(invocations)

    events = [line.split() for line in dep.effects.lines() if run in line]
    starts = [tag.removeprefix(f"{run}-") for kind, tag in events if kind == "start"]
    assert sorted(starts[:N]) == [f"long{i}" for i in range(N)]
    assert starts[N:N + 2] in (["high1", "high2"], ["high2", "high1"])
    assert starts[N + 2] == "mid"
    assert sorted(starts[N + 3:]) == ["low1", "low2"]
    in_flight = peak = 0
    for kind, _ in events:
        in_flight += 1 if kind == "start" else -1
        peak = max(peak, in_flight)
    assert peak == N
    assert len(events) == 2 * len(invocations)
    eventually(lambda: queue_status(dep) == {"inFlight": 0, "queued": 0} or _not_yet(), timeout=5)


def _not_yet() -> bool:
    raise AssertionError("the queue has not drained")
