"""End to end: a fast upload answers the waiting client; a slow one ends in exactly one email."""

from __future__ import annotations

import uuid

import pytest

from examples._harness import DeployFn, Deployment, run_client
from pyrestate.testing import json_of

UPLOAD_S = 1.0


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    return deploy("sync_to_async", env={"UPLOAD_SECONDS": str(UPLOAD_S)})


def upload(dep: Deployment, upload_id: str, timeout: float) -> str:
    done = run_client("sync_to_async.client", upload_id, "me@example.com", "--timeout", str(timeout),
                      env={"RESTATE_URL": dep.ingress.url})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_fast_upload_returns_the_url_synchronously(dep: Deployment) -> None:
    upload_id = f"upload-{uuid.uuid4().hex[:8]}"
    out = upload(dep, upload_id, timeout=UPLOAD_S + 10)
    url = json_of(dep.ingress.workflow_attach("dataUploader", upload_id))
    assert out == f"Fast upload: URL was {url}\n"
    assert not dep.effects.matching("me@example.com")


def test_slow_upload_switches_to_email(dep: Deployment) -> None:
    upload_id = f"upload-{uuid.uuid4().hex[:8]}"
    before = len(dep.effects.lines())
    out = upload(dep, upload_id, timeout=UPLOAD_S / 4)
    assert out == "Slow upload... Mail the link later\n"
    url = json_of(dep.ingress.workflow_attach("dataUploader", upload_id))
    assert dep.effects.lines()[before:] == [
        f"Created bucket {url}",
        f"Uploaded data to {url}",
        f"Sent email to me@example.com with link {url}",
    ]
