"""WorkflowAPI: run once per id, shared handlers, durable promises, attach/output, re-submission."""

from __future__ import annotations

from conformance.conftest import Env
from conformance.helpers import new_key
from pyrestate.testing import eventually, json_of

WF = "BlockAndWaitWorkflow"


def test_set_and_resolve(env: Env) -> None:
    wf_id = new_key()
    accepted = env.ingress.send_json(WF, "run", "Till", key=wf_id)
    assert accepted["status"] == "Accepted"
    inv = accepted["invocationId"]

    def state_visible() -> None:
        assert env.ingress.call_json(WF, "getState", key=wf_id) == "Till"

    eventually(state_visible)
    # Still blocked on the promise: no output yet.
    assert env.ingress.workflow_attach(WF, wf_id, output=True).status_code == 470

    assert env.ingress.call(WF, "unblock", "Foo", key=wf_id).status_code == 200
    attached = env.ingress.workflow_attach(WF, wf_id)
    assert json_of(attached) == "Foo"
    assert attached.headers["x-restate-id"] == inv
    assert json_of(env.ingress.workflow_attach(WF, wf_id, output=True)) == "Foo"
    assert json_of(env.ingress.output(inv)) == "Foo"

    again = env.ingress.send_json(WF, "run", "Other", key=wf_id)
    assert again == {"invocationId": inv, "status": "PreviouslyAccepted"}
    sync = env.ingress.call(WF, "run", "Other", key=wf_id)
    assert sync.status_code == 409
    assert sync.json()["message"] == "the workflow method was already invoked"

    # Resolving a completed promise again is a terminal 409 for the caller.
    r = env.ingress.call(WF, "unblock", "Bar", key=wf_id)
    assert r.status_code == 409, r.text


def test_output_of_unknown_workflow_is_404(env_h2: Env) -> None:
    r = env_h2.ingress.workflow_attach(WF, new_key(), output=True)
    assert r.status_code == 404
    assert r.json()["message"] == "invocation not found"
