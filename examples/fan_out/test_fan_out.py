"""End to end: the documented task is split, fanned out and aggregated; a crash midway changes nothing."""

from __future__ import annotations

import uuid

import pytest

from examples._harness import DeployFn, Deployment
from pyrestate.testing import json_of

TASK = {"description": "get out of bed,shower,make coffee,have breakfast"}
SUBTASKS = TASK["description"].split(",")
RESULT = "get out of bed: DONE,shower: DONE,make coffee: DONE,have breakfast: DONE"


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    return deploy("fan_out", env={"SUBTASK_SECONDS": "0.2"})


def test_run_aggregates_the_subtask_results(dep: Deployment) -> None:
    assert json_of(dep.ingress.call("worker", "run", TASK)) == RESULT
    for subtask in SUBTASKS:
        assert dep.effects.count(f"Execution subtask finished: {subtask}") == 1


def test_killing_the_sdk_midway_still_runs_every_subtask_exactly_once(deploy: DeployFn) -> None:
    dep = deploy("fan_out", env={"SUBTASK_SECONDS": "1.5"})
    sent = dep.ingress.send_json("worker", "run", TASK, idempotency_key=str(uuid.uuid4()))
    dep.effects.wait_for(lambda lines: sum(line.startswith("Started") for line in lines) == 4)
    # The subtasks' sleeps (and their timers) are recorded: the crash comes while they sleep.
    dep.wait_for_rows(
        "SELECT j.id FROM sys_journal j JOIN sys_invocation i ON j.id = i.id "
        f"WHERE i.invoked_by_id = '{sent['invocationId']}' AND j.entry_type = 'Command: Sleep'",
        count=4,
    )
    assert not dep.effects.matching("finished"), "the subtasks ended before the crash; nothing was tested"
    dep.kill()
    dep.start()

    assert json_of(dep.ingress.attach(sent["invocationId"])) == RESULT
    assert dep.effects.count("Split task into 4 subtasks") == 1
    for subtask in SUBTASKS:
        assert dep.effects.count(f"Started executing subtask: {subtask}") == 1
        assert dep.effects.count(f"Execution subtask finished: {subtask}") == 1
    assert len(dep.effects.lines()) == 9
