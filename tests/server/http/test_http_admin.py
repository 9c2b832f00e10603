"""Admin API over real HTTP: shapes and statuses of the behaviour sheet (§3)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from http_fake_core import DONE_ID, DP_ID, KILLED_ID, PENDING_ID, RUNNING_ID, UNKNOWN_ID, FakeCore

from pyrestate.server.core_api import InvocationCommand

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


def names(r: httpx.Response) -> list[str]:
    return [k for k, _ in r.headers.multi_items() if k != "date"]


def capture(name: str) -> object:
    return json.loads((CAPTURES / name).read_text())


def test_health_and_version(admin: httpx.Client) -> None:
    r = admin.get("/health")
    assert r.status_code == 200 and r.content == b""
    assert names(r) == ["content-length"]
    r = admin.get("/version")
    assert r.status_code == 200
    assert names(r) == ["content-type", "vary", "content-length"]
    assert r.headers["vary"] == "accept-encoding"
    body = r.json()
    assert list(body) == [
        "version",
        "min_admin_api_version",
        "max_admin_api_version",
        "ingress_endpoint",
        "features",
    ]
    assert body["version"] == "0.1.0"
    assert (body["min_admin_api_version"], body["max_admin_api_version"]) == (2, 4)
    assert body["ingress_endpoint"] == "http://127.0.0.1:8080/"
    assert len(body["features"]) == 12 and not any(body["features"].values())


@pytest.mark.parametrize("prefix", ["", "/v2", "/v3", "/v4"])
def test_versioned_prefixes(admin: httpx.Client, prefix: str) -> None:
    assert admin.get(f"{prefix}/health").status_code == 200
    assert admin.get(f"{prefix}/services/Counter").json()["name"] == "Counter"


def test_unsupported_version(admin: httpx.Client) -> None:
    r = admin.get("/v1/health")
    assert r.status_code == 400 and "restate_code" in r.json()


def test_gzip_on_request(admin: httpx.Client) -> None:
    r = admin.get("/services", headers={"accept-encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert [s["name"] for s in r.json()["services"]][:2] == ["taskWorker", "Echo"]


def test_service_json_matches_capture(admin: httpx.Client) -> None:
    assert admin.get("/services/Counter").json() == capture("admin-GET-services_Counter.json")
    assert admin.get("/services/Counter/handlers/add").json() == capture(
        "admin-GET-services_Counter_handlers_add.json"
    )
    handlers = admin.get("/services/Counter/handlers").json()["handlers"]
    expected = capture("admin-GET-services_Counter_handlers.json")["handlers"]  # type: ignore[index]
    assert sorted(handlers, key=lambda h: h["name"]) == sorted(expected, key=lambda h: h["name"])
    wf = admin.get("/services/Wf").json()
    wf_expected = capture("admin-GET-services_Wf.json")
    assert list(wf) == list(wf_expected)  # type: ignore[arg-type]
    assert wf["workflow_completion_retention"] == "1d"
    run = next(h for h in wf["handlers"] if h["name"] == "run")
    assert run == next(h for h in wf_expected["handlers"] if h["name"] == "run")  # type: ignore[index]
    stage = next(h for h in wf["handlers"] if h["name"] == "stage")
    assert stage == next(h for h in wf_expected["handlers"] if h["name"] == "stage")  # type: ignore[index]
    plain = admin.get("/services/taskWorker").json()["handlers"][0]
    assert "ty" not in plain and plain["input_description"] == "application/json"


def test_service_errors(admin: httpx.Client) -> None:
    r = admin.get("/services/NoSuch")
    assert r.status_code == 404
    assert r.content == b'{"message":"The requested service \'NoSuch\' does not exist","restate_code":null}'
    assert admin.get("/services/Counter/handlers/nope").status_code == 404


def test_patch_service(admin: httpx.Client, core: FakeCore) -> None:
    r = admin.patch("/services/Counter", json={"inactivity_timeout": "2s", "idempotency_retention": "PT1H"})
    assert r.status_code == 200
    assert r.json()["inactivity_timeout"] == "2s" and r.json()["idempotency_retention"] == "1h"
    assert core.services["Counter"].inactivity_timeout_ms == 2000
    r = admin.patch("/services/Counter", json={"abort_timeout": "soon"})
    assert r.status_code == 422 and r.headers["content-type"] == "text/plain; charset=utf-8"


def test_set_state(admin: httpx.Client, core: FakeCore) -> None:
    r = admin.post("/services/Counter/state", json={"object_key": "c9", "new_state": {"count": [52, 50]}})
    assert r.status_code == 202 and r.content == b"" and names(r) == ["content-length"]
    assert core.states[-1] == ("Counter", "c9", {"count": b"42"})


def test_invocation_commands(admin: httpx.Client, core: FakeCore) -> None:
    r = admin.patch(f"/invocations/{PENDING_ID}/cancel")
    assert r.status_code == 202 and r.content == b""
    assert admin.patch(f"/v4/invocations/{PENDING_ID}/kill").status_code == 200
    assert admin.patch(f"/invocations/{PENDING_ID}/resume?deployment=latest").status_code == 200
    assert core.commands[-1] == (PENDING_ID, InvocationCommand.RESUME, "latest")
    r = admin.patch(f"/invocations/{DONE_ID}/kill")
    assert r.status_code == 409
    assert (
        r.content
        == (
            f'{{"message":"The invocation \'{DONE_ID}\' was already completed.","restate_code":null}}'
        ).encode()
    )
    r = admin.patch(f"/invocations/{RUNNING_ID}/purge")
    assert r.json()["message"] == f"The invocation '{RUNNING_ID}' is not yet completed."
    r = admin.patch(f"/invocations/{UNKNOWN_ID}/cancel")
    assert r.status_code == 404
    assert r.json() == {
        "message": f"The requested invocation '{UNKNOWN_ID}' does not exist",
        "restate_code": None,
    }
    r = admin.patch("/invocations/not-an-id/cancel")
    assert r.status_code == 400
    assert (
        r.content == b'{"message":"The request field \'invocation_id\' is invalid. Reason: bad format",'
        b'"restate_code":null}'
    )
    r = admin.patch("/invocations/inv_1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/cancel")
    assert r.json()["message"].endswith("Reason: base62 decode error")
    assert admin.patch(f"/invocations/{KILLED_ID}/pause").status_code == 400
    assert admin.patch(f"/invocations/{DONE_ID}/purge").status_code == 200
    assert admin.patch(f"/invocations/{DONE_ID}/purge").status_code == 404  # gone
    r = admin.delete(f"/invocations/{KILLED_ID}?mode=Purge")
    assert r.status_code == 202 and core.commands[-1] == (KILLED_ID, InvocationCommand.PURGE, None)
    r = admin.get(f"/invocations/{DONE_ID}")
    assert r.status_code == 405 and r.headers["allow"] == "DELETE" and r.content == b""


def test_deployment_path_errors(admin: httpx.Client) -> None:
    r = admin.get("/deployments/dp_nonexistent")
    assert r.status_code == 400
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert (
        r.text
        == "Invalid URL: Cannot parse `deployment` with value `dp_nonexistent`: unrecognized codec version"
    )
    r = admin.get(f"/deployments/{DP_ID}")
    assert r.status_code == 404
    r = admin.post("/deployments", headers={"content-type": "application/json"}, content=b"not json")
    assert r.status_code == 400 and r.text.startswith("Failed to parse the request body as JSON: ")
    r = admin.post("/deployments", json={"nouri": 1})
    assert r.status_code == 422


def test_register_unreachable_deployment(admin: httpx.Client) -> None:
    from http_support import free_port

    uri = f"http://127.0.0.1:{free_port()}/"
    r = admin.post("/deployments", json={"uri": uri})
    assert r.status_code == 500
    body = r.json()
    assert list(body) == ["message", "restate_code"]
    assert body["restate_code"] == "META0003"
    assert body["message"].startswith(f"[META0003] [META0003] error when calling '{uri}': ")
