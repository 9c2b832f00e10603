"""FailureMetadata: a failure's metadata survives an awakeable, a named signal and a durable promise, and
reaches the caller (call response) and attach/output, as it does for a handler's own TerminalError."""

from __future__ import annotations

from typing import Any

import httpx

from conformance.conftest import Env
from conformance.helpers import new_key

METADATA = {"reason": "out of stock", "sku": "42"}
REQ = {"code": 422, "message": "rejected with metadata", "metadata": METADATA}


def _assert_failure(r: httpx.Response) -> None:
    assert r.status_code == 422, r.text
    body: dict[str, Any] = r.json()
    assert body["message"] == REQ["message"]
    assert body.get("metadata") == METADATA


def test_rejected_awakeable_carries_metadata(env: Env) -> None:
    r = env.ingress.call("FailureMetadata", "awaitAwakeable", REQ, key=new_key())
    _assert_failure(r)
    _assert_failure(env.ingress.output(r.headers["x-restate-id"]))


def test_rejected_signal_carries_metadata(env: Env) -> None:
    _assert_failure(env.ingress.call("FailureMetadata", "awaitSignal", REQ, key=new_key()))


def test_rejected_promise_carries_metadata(env: Env) -> None:
    wf_id = new_key()
    assert env.ingress.send("FailureMetadataWorkflow", "run", key=wf_id).status_code == 202
    assert env.ingress.call("FailureMetadataWorkflow", "reject", REQ, key=wf_id).status_code == 200
    _assert_failure(env.ingress.workflow_attach("FailureMetadataWorkflow", wf_id))
    _assert_failure(env.ingress.workflow_attach("FailureMetadataWorkflow", wf_id, output=True))
