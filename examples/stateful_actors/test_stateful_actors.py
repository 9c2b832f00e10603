"""End to end: transitions serialize per machine and interleave across machines; a crash resumes them."""

from __future__ import annotations

import uuid

import pytest

from examples._harness import DeployFn, Deployment
from pyrestate.testing import json_of


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    return deploy("stateful_actors", env={"TRANSITION_SECONDS": "0.7"})


def test_requests_queue_per_machine_and_interleave_across_machines(dep: Deployment) -> None:
    run = uuid.uuid4().hex[:6]
    a, b = f"a-{run}", f"b-{run}"
    # As in the documentation: five requests fired without waiting, enqueued in this order.
    sent = [(key, handler, dep.ingress.send_json("machineOperator", handler, key=key)["invocationId"])
            for key, handler in [(a, "setUp"), (a, "tearDown"), (b, "setUp"), (b, "setUp"), (b, "tearDown")]]
    results = [json_of(dep.ingress.attach(inv)) for _, _, inv in sent]
    assert results == [
        f"{a} is now up",
        f"{a} is now down",
        f"{b} is now up",
        f"{b} is already up, so nothing to do",
        f"{b} is now down",
    ]
    lines = dep.effects.lines()
    for key in (a, b):
        # One transition at a time per machine: begin/done strictly alternate.
        transitions = [line for line in lines if line.endswith((f"{key} to UP", f"{key} to DOWN"))]
        assert transitions == [
            f"Beginning transition of {key} to UP",
            f"Done transitioning {key} to UP",
            f"Beginning transition of {key} to DOWN",
            f"Done transitioning {key} to DOWN",
        ]
    # Different machines do not wait for each other.
    assert lines.index(f"Beginning transition of {b} to UP") < lines.index(f"Done transitioning {a} to UP")


def test_a_crash_mid_transition_resumes_it(dep: Deployment) -> None:
    machine = f"c-{uuid.uuid4().hex[:6]}"
    up = dep.ingress.send_json("machineOperator", "setUp", key=machine)["invocationId"]
    down = dep.ingress.send_json("machineOperator", "tearDown", key=machine)["invocationId"]
    dep.effects.wait_for_line(f"Beginning transition of {machine} to UP")
    # The transition's sleep is recorded: the crash comes mid-transition.
    dep.wait_for_rows(f"SELECT index FROM sys_journal WHERE id = '{up}' AND entry_type = 'Command: Sleep'")
    dep.kill()
    dep.start()
    assert json_of(dep.ingress.attach(up)) == f"{machine} is now up"
    assert json_of(dep.ingress.attach(down)) == f"{machine} is now down"
    assert dep.effects.matching(machine) == [
        f"Beginning transition of {machine} to UP",
        f"Done transitioning {machine} to UP",
        f"Beginning transition of {machine} to DOWN",
        f"Done transitioning {machine} to DOWN",
    ]
