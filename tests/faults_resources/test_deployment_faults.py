"""A deployment that is down, too slow, or answers garbage frames, a wrong content type or HTTP 500: the
invocation is retried by the retry policy (here: 4 attempts, then paused), its last failure says what went
wrong, and the server keeps serving everything else meanwhile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from resfaults_apps import counter_app, faulty_app

from pyrestate.testing import InProcessApp, RuntimeConfig, make_runtime, register_deployment

pytestmark = pytest.mark.timeout(180)

ABORT_S = 1.0
POLICY = RuntimeConfig(
    inactivity_timeout="500ms",
    abort_timeout=f"{int(ABORT_S * 1000)}ms",
    retry_initial_interval="100ms",
    retry_max_interval="300ms",
    retry_max_attempts=4,
    retry_on_max_attempts="pause",
)


SELECT = "SELECT status, retry_count, last_failure FROM sys_invocation"


class Env:
    def __init__(self, ingress: str, admin: str) -> None:
        self.ingress = httpx.Client(base_url=ingress, timeout=30)
        self.admin = httpx.Client(base_url=admin, timeout=30)

    def send(self, path: str, body: Any) -> str:
        r = self.ingress.post(path + "/send", json=body)
        assert r.status_code == 202, r.text
        return str(r.json()["invocationId"])

    def row(self, invocation_id: str) -> dict[str, Any]:
        r = self.admin.post(
            "/query",
            json={"query": f"{SELECT} WHERE id = '{invocation_id}'"},
            headers={"accept": "application/json"},
        )
        assert r.status_code == 200, r.text
        rows = r.json()["rows"]
        assert len(rows) == 1, rows
        return dict(rows[0])

    def wait_paused(self, invocation_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        row = self.row(invocation_id)
        while row["status"] != "paused":
            assert time.monotonic() < deadline, row
            # Everything else is still served while the invocation fails.
            assert self.ingress.get("/restate/health").status_code == 200
            time.sleep(0.2)
            row = self.row(invocation_id)
        return row


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    app = InProcessApp(faulty_app(slow_seconds=ABORT_S * 4))
    app.start()
    rt = make_runtime("pyrestate", POLICY)
    try:
        rt.start()
        register_deployment(rt.admin_url, app.url)
        e = Env(rt.ingress_url, rt.admin_url)
        yield e
        log = rt.log_path.read_text(errors="replace")
        assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:4000]
        e.ingress.close()
        e.admin.close()
    finally:
        rt.close()
        app.stop()


@pytest.mark.parametrize(
    ("handler", "failure"),
    [
        ("garbage", "protocol"),
        ("wrongct", "content-type 'text/html'"),
        ("http500", "HTTP 500"),
        ("slow", "abort timeout"),
    ],
)
def test_misbehaving_deployment_is_retried_then_paused_with_a_clear_failure(
    env: Env, handler: str, failure: str
) -> None:
    inv = env.send(f"/FaultSvc/{handler}", "x")
    # A healthy handler of the same deployment works while this one fails.
    r = env.ingress.post("/FaultSvc/ok", json="y")
    assert (r.status_code, r.json()) == (200, "ok y"), r.text
    row = env.wait_paused(inv)
    assert row["retry_count"] >= 4, row
    assert failure in (row["last_failure"] or ""), row
    assert "internal error" not in row["last_failure"], row
    assert env.admin.patch(f"/invocations/{inv}/kill").status_code == 200


def test_deployment_down_then_back(env: Env) -> None:
    app = InProcessApp(counter_app)
    app.start()
    register_deployment(str(env.admin.base_url).rstrip("/"), app.url)
    r = env.ingress.post("/DiskCounter/down/add", json=1)
    assert (r.status_code, r.json()) == (200, 1), r.text
    app.stop()
    inv = env.send("/DiskCounter/down/add", 2)
    row = env.wait_paused(inv)
    assert "connection refused" in row["last_failure"], row
    assert env.ingress.post("/FaultSvc/ok", json="z").status_code == 200  # another deployment still works
    app = InProcessApp(counter_app, port=app.port)
    app.start()
    try:
        assert env.admin.patch(f"/invocations/{inv}/resume").status_code == 200
        out = env.ingress.get(f"/restate/invocation/{inv}/attach")
        assert (out.status_code, out.json()) == (200, 3), out.text
    finally:
        app.stop()
