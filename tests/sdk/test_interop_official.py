"""pyrestate.sdk services driven through the official restate-server (HTTP/2 bidi and HTTP/1.1)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pyrestate.testing import (
    Admin,
    Ingress,
    OfficialRestateServer,
    RuntimeConfig,
    ServiceApp,
    register_deployment,
)

APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture(scope="module")
def sdk_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceApp]:
    app = ServiceApp(
        "interop_app:app", pythonpath=[APPS], log_dir=tmp_path_factory.mktemp("sdk"), name="sdk-interop"
    )
    app.start()
    yield app
    app.stop()


@pytest.fixture(scope="module", params=["h2", "h1"])
def env(
    request: pytest.FixtureRequest, sdk_app: ServiceApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Ingress, Admin, str]]:
    config = RuntimeConfig(retry_initial_interval="50ms", retry_max_interval="500ms")
    server = OfficialRestateServer(
        config, log_dir=tmp_path_factory.mktemp("rt"), name=f"official-{request.param}"
    )
    server.start()
    try:
        register_deployment(server.admin_url, sdk_app.url, use_http_11=request.param == "h1")
        with Ingress(server.ingress_url) as ingress, Admin(server.admin_url) as admin:
            yield ingress, admin, request.param
    finally:
        server.close()


def test_deployment_is_this_sdk(env: tuple[Ingress, Admin, str]) -> None:
    _, admin, _ = env
    deployments = httpx.get(f"{admin.url}/deployments").json()["deployments"]
    assert deployments[0]["sdk_version"].startswith("pyrestate-sdk-python/")
    services = {s["name"]: s for s in deployments[0]["services"]}
    assert set(services) == {"Greeter", "Counter", "Approval"}


def test_plain_handler(env: tuple[Ingress, Admin, str]) -> None:
    ingress, _, _ = env
    assert ingress.call_json("Greeter", "greet", "world") == "hello world"


def test_terminal_error(env: tuple[Ingress, Admin, str]) -> None:
    ingress, _, _ = env
    r = ingress.call("Greeter", "fail", 422)
    assert r.status_code == 422
    assert "nope" in r.text


def test_state(env: tuple[Ingress, Admin, str]) -> None:
    ingress, _, mode = env
    key = f"c-{mode}"
    assert ingress.call_json("Counter", "add", 5, key=key) == 5
    assert ingress.call_json("Counter", "add", 2, key=key) == 7
    assert ingress.call_json("Counter", "get", key=key) == 7
    assert ingress.call_json("Counter", "keys", key=key) == ["count"]
    ingress.call("Counter", "reset", key=key)
    assert ingress.call_json("Counter", "get", key=key) == 0


def test_delayed_send(env: tuple[Ingress, Admin, str]) -> None:
    ingress, _, mode = env
    key = f"s-{mode}"
    ingress.call("Counter", "addViaSend", 3, key=key)
    _until(lambda: ingress.call_json("Counter", "get", key=key) == 3, timeout=10)


def test_run_retries_then_succeeds(env: tuple[Ingress, Admin, str]) -> None:
    ingress, _, mode = env
    assert ingress.call_json("Greeter", "runFlaky", f"k-{mode}") == "ok after 3"


def test_run_gives_up_after_max_attempts(env: tuple[Ingress, Admin, str]) -> None:
    ingress, _, _ = env
    assert ingress.call_json("Greeter", "runGiveUp").startswith("gave up")


def test_sleep(env: tuple[Ingress, Admin, str]) -> None:
    ingress, _, _ = env
    started = time.monotonic()
    assert ingress.call_json("Greeter", "sleepy", 300) == "slept"
    assert time.monotonic() - started >= 0.3


def test_service_calls_fan_out(env: tuple[Ingress, Admin, str]) -> None:
    ingress, _, _ = env
    assert ingress.call_json("Greeter", "fanOut", ["a", "b", "c"]) == ["hello a", "hello b", "hello c"]


def test_select_first_sleep(env: tuple[Ingress, Admin, str]) -> None:
    ingress, _, _ = env
    assert ingress.call_json("Greeter", "raceSleep") == "fast"


def test_random_is_stable_across_suspension(env: tuple[Ingress, Admin, str]) -> None:
    ingress, _, _ = env
    out = ingress.call_json("Greeter", "deterministic")
    assert out["id"].startswith("inv_1")
    assert len(out["values"]) == 2


def test_awakeable(env: tuple[Ingress, Admin, str]) -> None:
    ingress, _, mode = env
    key = f"a-{mode}"
    sent = ingress.send_json("Counter", "awaitAwakeable", key=key)
    awk = _until(lambda: ingress.call_json("Counter", "awakeableId", key=key), timeout=10)
    assert awk.startswith("sign_1")
    ingress.resolve_awakeable(awk, "resolved!")
    out = _until(lambda: _output(ingress, sent["invocationId"]), timeout=10)
    assert out == "resolved!"


def test_workflow_promise(env: tuple[Ingress, Admin, str]) -> None:
    ingress, _, mode = env
    wf_id = f"w-{mode}"
    ingress.send_json("Approval", "run", {"item": "tea", "qty": 2}, key=wf_id)
    _until(lambda: ingress.call_json("Approval", "stage", key=wf_id) == "waiting", timeout=10)
    assert ingress.call_json("Approval", "approve", "alice", key=wf_id) == "ok"
    r = ingress.workflow_attach("Approval", wf_id)
    assert r.json() == "2xtea approved by alice"


def test_cancel_sleeping_invocation(env: tuple[Ingress, Admin, str]) -> None:
    ingress, admin, _ = env
    sent = ingress.send_json("Greeter", "longSleep")
    inv = sent["invocationId"]
    sql = f"SELECT index FROM sys_journal WHERE id = '{inv}' AND entry_type = 'Command: Sleep'"
    _until(lambda: admin.query(sql), timeout=15)  # the cancel reaches a sleeping invocation
    r = admin.cancel(inv)
    assert r.status_code == 202, r.text
    r = _until(lambda: _attach_done(ingress, inv), timeout=15)
    assert r.status_code == 409


def _output(ingress: Ingress, inv: str) -> object:
    r = ingress.output(inv)
    return r.json() if r.status_code == 200 else None


def _attach_done(ingress: Ingress, inv: str) -> httpx.Response | None:
    r = ingress.output(inv)
    return None if r.status_code == 470 else r


def _until(fn: object, timeout: float = 10.0) -> object:
    """Poll `fn` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()  # type: ignore[operator]
        except (AssertionError, httpx.TransportError):
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
