"""End to end: /send with idempotency key and delay, deduplication, attach from another process."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from examples._harness import DeployFn, Deployment, run_client
from pyrestate.testing import json_of


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    return deploy("async_tasks")


def test_delayed_task_runs_once_and_duplicates_return_the_previous_invocation(dep: Deployment) -> None:
    key = f"dQw4w9WgXcQ-{uuid.uuid4().hex[:8]}"
    task = {"id": key, "payload": "hello"}
    started = time.monotonic()
    first = dep.ingress.send_json("taskWorker", "runTask", task, idempotency_key=key, delay="1s")
    assert first["status"] == "Accepted"
    duplicate = dep.ingress.send_json("taskWorker", "runTask", task, idempotency_key=key, delay="1s")
    assert (duplicate["invocationId"], duplicate["status"]) == (first["invocationId"], "PreviouslyAccepted")
    # A delayed send reports when it will run.
    assert "executionTime" in first

    # Another process latches on by idempotency key while the task still waits for its delay.
    assert dep.effects.matching(key) == []
    attached = run_client("async_tasks.client", "attach", key,
                          env={"RESTATE_URL": dep.ingress.url})
    assert attached.returncode == 0, attached.stderr
    assert json.loads(attached.stdout) == f"task {key} done: HELLO"
    assert time.monotonic() - started >= 1.0, "the delay was not honoured"

    # A later duplicate, even a synchronous call, gets the stored response; the work never runs again.
    assert json_of(dep.ingress.call("taskWorker", "runTask", task, idempotency_key=key)) == \
        f"task {key} done: HELLO"
    again = dep.ingress.send_json("taskWorker", "runTask", task, idempotency_key=key)
    assert (again["invocationId"], again["status"]) == (first["invocationId"], "PreviouslyAccepted")
    assert json_of(dep.ingress.attach(first["invocationId"])) == f"task {key} done: HELLO"
    assert dep.effects.matching(key) == [f"task {key} executed"]


def test_submitter_process_schedules_and_attaches(dep: Deployment) -> None:
    key = f"task-{uuid.uuid4().hex[:8]}"
    env = {"RESTATE_URL": dep.ingress.url}
    submitted = run_client("async_tasks.client", "submit", key, json.dumps({"id": key, "payload": "x"}),
                           "--delay", "200ms", env=env)
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["status"] == "Accepted"
    resubmitted = run_client("async_tasks.client", "submit", key, json.dumps({"id": key, "payload": "x"}),
                             env=env)
    first, second = json.loads(submitted.stdout), json.loads(resubmitted.stdout)
    assert (second["invocationId"], second["status"]) == (first["invocationId"], "PreviouslyAccepted")
    attached = run_client("async_tasks.client", "attach", key, env=env)
    assert json.loads(attached.stdout) == f"task {key} done: X"
    assert dep.effects.matching(key) == [f"task {key} executed"]


def test_sdk_ingress_client_sends_with_idempotency(dep: Deployment) -> None:
    key = f"sdk-{uuid.uuid4().hex[:8]}"
    env = {"RESTATE_URL": dep.ingress.url}
    task = json.dumps({"id": key, "payload": "sdk"})
    first = run_client("async_tasks.sdk_client", key, task, env=env)
    assert first.returncode == 0, first.stderr
    second = run_client("async_tasks.sdk_client", key, task, env=env)
    assert second.returncode == 0, second.stderr
    assert first.stdout.strip() == second.stdout.strip() != ""
    attached = run_client("async_tasks.client", "attach", key, env=env)
    assert json.loads(attached.stdout) == f"task {key} done: SDK"
    assert dep.effects.matching(key) == [f"task {key} executed"]
