"""POST /deployments against a real official-SDK app (restate-sdk 1.3.0) served by `pyrestate serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from http_fake_core import FakeCore
from http_support import free_port

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def sdk_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("restate")
    port = free_port()
    log = tmp_path_factory.mktemp("sdk") / "sdk.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyrestate.cli.main",
                "serve",
                "http_sdk_services:app",
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=HERE,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(HERE)},
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"SDK app did not start:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)  # the SDK's SIGTERM hook keeps hypercorn alive
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_register_real_sdk_deployment(admin: httpx.Client, core: FakeCore, sdk_app: str) -> None:
    r = admin.post("/deployments", json={"uri": sdk_app})
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"deployments/{body['id']}"
    assert list(body) == ["id", "services", "min_protocol_version", "max_protocol_version", "sdk_version"]
    assert (body["min_protocol_version"], body["max_protocol_version"]) == (5, 7)
    assert body["sdk_version"] == "restate-sdk-python/1.3.0"
    services = {s["name"]: s for s in body["services"]}
    assert set(services) == {"Counter", "Wf", "Greeter"}
    counter = services["Counter"]
    assert list(counter) == [
        "name",
        "ty",
        "handlers",
        "deployment_id",
        "revision",
        "public",
        "idempotency_retention",
        "journal_retention",
        "inactivity_timeout",
        "abort_timeout",
        "enable_lazy_state",
        "retry_policy",
    ]
    handlers = {h["name"]: h for h in counter["handlers"]}
    assert handlers["add"] == {
        "name": "add",
        "ty": "Exclusive",
        "public": True,
        "input_description": "JSON integer",
        "output_description": "JSON integer",
        "input_json_schema": {"type": "integer"},
        "output_json_schema": {"type": "integer"},
        "retry_policy": {"max_attempts": None},
    }
    assert handlers["get"]["input_description"] == "none" and handlers["get"]["ty"] == "Shared"
    assert handlers["reset"]["output_description"] == "none"
    assert "workflow_completion_retention" in services["Wf"]
    assert "ty" not in services["Greeter"]["handlers"][0]

    reg = core.registrations[-1]
    assert reg.protocol_mode == "BIDI_STREAM" and not reg.use_http_11 and not reg.force
    assert core.services["Counter"].handlers["get"].input_content_type is None

    # the same URI again: 200 with the existing id
    again = admin.post("/v4/deployments", json={"uri": sdk_app})
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    listed = admin.get("/deployments").json()["deployments"][0]
    assert list(listed) == [
        "id",
        "uri",
        "protocol_type",
        "http_version",
        "created_at",
        "min_protocol_version",
        "max_protocol_version",
        "sdk_version",
        "services",
    ]
    assert (listed["protocol_type"], listed["http_version"]) == ("BidiStream", "HTTP/2.0")
    assert {"name": "Counter", "revision": 1} in listed["services"]
    detail = admin.get(f"/deployments/{body['id']}").json()
    assert detail["services"][0]["handlers"]


def test_register_real_sdk_over_http11(admin: httpx.Client, core: FakeCore, sdk_app: str) -> None:
    r = admin.post("/deployments", json={"uri": sdk_app, "use_http_11": True, "dry_run": False})
    assert r.status_code == 201, r.text
    assert core.registrations[-1].protocol_mode == "REQUEST_RESPONSE"
    assert all(s["inactivity_timeout"] == "0s" for s in r.json()["services"])
    listed = admin.get("/deployments").json()["deployments"][0]
    assert (listed["protocol_type"], listed["http_version"]) == ("RequestResponse", "HTTP/1.1")


def test_dry_run_of_new_deployment_answers_201(admin: httpx.Client, core: FakeCore, sdk_app: str) -> None:
    # captures/cli-admin-requests.txt #1: the real server answers 201 to a dry run of a new URI, and the
    # official CLI reads a 200 as "already registered" and stops.
    r = admin.post("/deployments", json={"uri": sdk_app, "dry_run": True})
    assert r.status_code == 201, r.text
    assert core.registrations[-1].dry_run and not core.deployments


def test_cli_against_admin(admin: httpx.Client, sdk_app: str) -> None:
    base = str(admin.base_url).rstrip("/")
    cli = [sys.executable, "-m", "pyrestate.cli.main"]
    out = subprocess.run(
        [*cli, "deployments", "register", sdk_app, "--admin-url", base],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "registered" in out.stdout and "Counter" in out.stdout
    out = subprocess.run(
        [*cli, "services", "list", "--admin-url", base], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "Greeter" in out.stdout
    out = subprocess.run(
        [*cli, "deployments", "list", "--admin-url", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 3 and "cannot reach the admin API" in out.stderr
