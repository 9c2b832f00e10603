"""Restart-as-new (`PATCH /invocations/{id}/restart-as-new`, Restate 1.6+): from the input only, or from a
prefix of the journal (`from`, included) whose completed steps are not run again; the status codes and
messages of every refusal, as restate-server 1.7.12 answers them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conformance.conftest import Env
from conformance.helpers import new_key
from pyrestate.testing import eventually, json_of


def _restart(env: Env, inv: str, **params: Any) -> httpx.Response:
    return httpx.patch(f"{env.runtime.admin_url}/invocations/{inv}/restart-as-new", params=params)


def _result(env: Env, inv: str) -> Any:
    return json_of(env.ingress.attach(inv))


def _executions(env: Env, key: str) -> dict[str, int]:
    result: dict[str, int] = env.ingress.call_json("RestartSteps", "executions", key)
    return result


def _completed(env: Env, key: str) -> str:
    r = env.ingress.call("RestartSteps", "run", key)
    assert json_of(r) == [1, 1]
    return r.headers["x-restate-id"]


def test_restart_from_the_input_runs_every_step_again(env_h2: Env) -> None:
    env, key = env_h2, new_key()
    inv = _completed(env, key)
    r = _restart(env, inv)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    new = r.json()["new_invocation_id"]
    assert list(r.json()) == ["new_invocation_id"] and new != inv
    assert _result(env, new) == [2, 2]
    [row] = env.admin.query(
        f"SELECT invoked_by, restarted_from, idempotency_key FROM sys_invocation WHERE id = '{new}'"
    )
    assert row["invoked_by"] == "restart_as_new"
    assert row["restarted_from"] == inv
    assert row.get("idempotency_key") is None
    # The new invocation lives with the original (same partition key).
    assert new[:16] == inv[:16]


@pytest.mark.parametrize(
    ("from_index", "expected", "ran"),
    [
        (0, [2, 2], {"one": 2, "two": 2}),
        (1, [1, 2], {"one": 1, "two": 2}),  # the step's completion comes along with its command
        (2, [1, 2], {"one": 1, "two": 2}),
        (3, [1, 1], {"one": 1, "two": 1}),
        (5, [1, 1], {"one": 1, "two": 1}),  # the whole journal, Output included
    ],
)
def test_restart_from_a_journal_prefix(
    env: Env, from_index: int, expected: list[int], ran: dict[str, int]
) -> None:
    key = new_key()
    inv = _completed(env, key)
    types = [
        row["entry_type"]
        for row in env.admin.query(f"SELECT entry_type FROM sys_journal WHERE id = '{inv}' ORDER BY index")
    ]
    assert types == [
        "Command: Input",
        "Command: Run",
        "Notification: Run",
        "Command: Run",
        "Notification: Run",
        "Command: Output",
    ]
    r = _restart(env, inv, **{"from": from_index})
    assert r.status_code == 200, r.text
    assert _result(env, r.json()["new_invocation_id"]) == expected
    assert _executions(env, key) == ran


def test_restart_with_deployment_choices(env_h2: Env) -> None:
    env = env_h2
    inv = _completed(env, new_key())
    [row] = env.admin.query(f"SELECT pinned_deployment_id FROM sys_invocation WHERE id = '{inv}'")
    for deployment in ("keep", "latest", "Keep", "Latest", row["pinned_deployment_id"]):
        r = _restart(env, inv, **{"from": 2, "deployment": deployment})
        assert r.status_code == 200, (deployment, r.text)
        assert _result(env, r.json()["new_invocation_id"])[0] == 1
    r = _restart(env, inv, **{"from": 2, "deployment": "dp_11s7n848ZO6Ar76jiDzfUOX"})
    assert r.status_code == 400
    assert r.json() == {
        "message": "The given deployment was not found when trying to restart as new the invocation "
        f"'{inv}'.",
        "restate_code": None,
    }
    r = _restart(env, inv, **{"from": 2, "deployment": "foo"})
    assert (r.status_code, r.json()["message"]) == (
        400,
        "The query parameter 'deployment' is invalid. Reason: bad format",
    )


def test_restart_of_an_object_invocation(env_h2: Env) -> None:
    env, key = env_h2, new_key()
    r = env.ingress.call("RestartObject", "bump", key=key)
    assert json_of(r) == 1
    restarted = _restart(env, r.headers["x-restate-id"])
    assert restarted.status_code == 200
    assert _result(env, restarted.json()["new_invocation_id"]) == 2


def test_restart_refusals(env_h2: Env) -> None:
    env, key = env_h2, new_key()
    inv = _completed(env, key)

    r = _restart(env, inv, **{"from": 6})
    assert r.status_code == 400
    assert r.json() == {
        "message": f"The prefix of the journal '{inv}' up to 'from' (included) contains some Commands "
        "without respective Completions.",
        "restate_code": None,
    }
    for bad, reason in (
        ("-1", "invalid digit found in string"),
        ("abc", "invalid digit found in string"),
        ("", "cannot parse integer from empty string"),
        ("99999999999", "number too large to fit in target type"),
    ):
        r = _restart(env, inv, **{"from": bad})
        assert r.status_code == 400
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.text == f"Failed to deserialize query string: from: {reason}"

    unknown = inv[:-1] + ("A" if inv[-1] != "A" else "B")
    r = _restart(env, unknown)
    assert (r.status_code, r.json()["message"]) == (
        404,
        f"The requested invocation '{unknown}' does not exist",
    )
    r = _restart(env, "nope")
    assert (r.status_code, r.json()["message"]) == (
        400,
        "The request field 'invocation_id' is invalid. Reason: bad format",
    )
    r = httpx.get(f"{env.runtime.admin_url}/invocations/{inv}/restart-as-new")
    assert (r.status_code, r.headers.get("allow")) == (405, "PATCH")

    wf = env.ingress.call("RestartWorkflow", "run", "x", key=key)
    wf_id = wf.headers["x-restate-id"]
    r = _restart(env, wf_id)
    assert r.status_code == 422
    assert r.json()["message"] == (
        f"Restarting the invocation '{wf_id}' is not supported. Restarting workflows is not supported, "
        "and restarting invocations created using the old service protocol."
    )

    delayed = env.ingress.send_json("RestartSteps", "run", key, delay="1h")["invocationId"]
    r = _restart(env, delayed)
    assert (r.status_code, r.json()["message"]) == (
        425,
        f"The invocation '{delayed}' cannot be restarted because it's not running yet.",
    )
    assert env.admin.cancel(delayed).status_code in (200, 202)

    holder_key = new_key()  # blocks on an awakeable it hands to AwakeableHolder
    running = env.ingress.send_json("CancelTestBlockingService", "block", "AWAKEABLE", key=holder_key)[
        "invocationId"
    ]

    def held() -> None:
        assert env.ingress.call_json("AwakeableHolder", "hasAwakeable", key=holder_key) is True

    eventually(held)
    r = _restart(env, running)
    assert (r.status_code, r.json()["message"]) == (409, f"The invocation '{running}' is still running.")
    assert env.admin.kill(running).status_code == 200

    purged = httpx.patch(f"{env.runtime.admin_url}/invocations/{inv}/purge-journal")
    assert purged.status_code == 200
    r = _restart(env, inv)
    assert r.status_code == 410
    assert r.json()["message"] == (
        f"The invocation '{inv}' cannot be restarted because the input is not available. This indicates "
        "that the journal was already purged, or not retained at all."
    )


def test_resume_retries_a_backing_off_invocation_now(env_h2: Env) -> None:
    env, key = env_h2, new_key()
    inv = env.ingress.send_json("RetryNow", "flaky", key)["invocationId"]

    def backing_off() -> None:
        [row] = env.admin.query(f"SELECT status, retry_count FROM sys_invocation WHERE id = '{inv}'")
        assert row["status"] == "backing-off", row

    eventually(backing_off)
    r = httpx.patch(f"{env.runtime.admin_url}/invocations/{inv}/resume", params={"deployment": "latest"})
    assert r.status_code == 409
    assert r.json()["message"] == (
        f"The invocation '{inv}' is still running or the deployment id is not pinned yet, deployment id "
        "cannot be changed."
    )
    r = httpx.patch(f"{env.runtime.admin_url}/invocations/{inv}/resume")
    assert r.status_code == 200
    assert _result(env, inv) == 2  # well before the hour of back-off is over
