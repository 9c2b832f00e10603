"""End to end: the first completion wins for every awaiter, in other processes and across a restart."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from examples._harness import DeployFn, Deployment, start_client
from pyrestate.testing import eventually, json_of


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    return deploy("durable_promises")


def call(dep: Deployment, handler: str, **request: Any) -> Any:
    return json_of(dep.ingress.call("durablePromiseServer", handler, {"request": request}))


def test_first_resolution_wins_for_every_awaiter_across_processes_and_a_restart(dep: Deployment) -> None:
    name = f"prom-{uuid.uuid4().hex[:8]}"
    env = {"RESTATE_URL": dep.ingress.url}
    assert call(dep, "peek", promiseName=name) is None
    awaiters = [start_client("durable_promises.client", "await", name, env=env) for _ in range(3)]
    listeners = (
        "SELECT value_utf8 FROM state WHERE service_name = 'durablePromiseObject' "
        f"AND service_key = '{name}' AND key = 'listeners'"
    )

    def subscribed() -> None:  # the three awaiters' awakeables are stored with the promise
        rows = dep.admin.query(listeners)
        assert rows and len(json.loads(rows[0]["value_utf8"])) == 3, rows

    eventually(subscribed)
    assert all(p.poll() is None for p in awaiters)

    dep.kill()  # the SDK process goes away while everyone waits
    dep.start()

    barack = {"name": "Barack", "email": "barack@example.com"}
    assert call(dep, "resolve", promiseName=name, value=barack) == {"value": barack}
    assert call(dep, "resolve", promiseName=name, value={"name": "Joe"}) == {"value": barack}
    assert call(dep, "reject", promiseName=name, errorMessage="help!") == {"value": barack}
    for p in awaiters:
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert json.loads(out) == barack
    # Later awaiters and peeks get the same value.
    assert call(dep, "await", promiseName=name) == {"value": barack}
    assert call(dep, "peek", promiseName=name) == {"value": barack}


def test_rejection_first_wins_too(dep: Deployment) -> None:
    name = f"prom-{uuid.uuid4().hex[:8]}"
    env = {"RESTATE_URL": dep.ingress.url}
    awaiter = start_client("durable_promises.client", "await", name, env=env)
    assert call(dep, "reject", promiseName=name, errorMessage="help!") == {"error": "help!"}
    assert call(dep, "resolve", promiseName=name, value=1) == {"error": "help!"}
    out, err = awaiter.communicate(timeout=30)
    assert out.strip() == "rejected: help!", err
