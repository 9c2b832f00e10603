"""Admin endpoints of Restate 1.6-1.7 beyond the invocation commands: `PATCH /deployments/{id}` (a new
address or headers are discovered again; the services change only with `overwrite`) and
`GET /cluster-health`. Each scenario gets a runtime of its own, since it rewrites registrations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from conformance.conftest import DEFAULT, RUNTIME_KIND, Runtime
from pyrestate.testing import Ingress, ServiceApp, free_port, json_of, register_deployment


@pytest.fixture(scope="module")
def app_both(service_app_factory: Callable[..., ServiceApp]) -> ServiceApp:
    return service_app_factory("patch-both", "RestartSteps,RestartObject")


@pytest.fixture(scope="module")
def app_steps(service_app_factory: Callable[..., ServiceApp]) -> ServiceApp:
    return service_app_factory("patch-steps", "RestartSteps")


def _patch(rt: Runtime, dep: str, body: Any) -> httpx.Response:
    return httpx.patch(f"{rt.admin_url}/deployments/{dep}", json=body, timeout=30)


def _normalized(detail: dict[str, Any]) -> dict[str, Any]:
    """The detail with services and handlers in name order (restate-server lists them in any order)."""
    services = [
        {**s, "handlers": sorted(s["handlers"], key=lambda h: h["name"])}
        for s in sorted(detail["services"], key=lambda s: s["name"])
    ]
    return {**detail, "services": services}


def _service_names(detail: dict[str, Any]) -> set[str]:
    return {s["name"] for s in detail["services"]}


def test_patch_deployment(
    runtime_factory: Callable[..., Runtime], app_both: ServiceApp, app_steps: ServiceApp
) -> None:
    rt = runtime_factory(DEFAULT, "patch-deployment")
    dep = register_deployment(rt.admin_url, app_both.url)["id"]
    detail = httpx.get(f"{rt.admin_url}/deployments/{dep}").json()

    # Neither uri nor headers: nothing is discovered, the deployment comes back as it is.
    for body in ({}, {"overwrite": True}, {"use_http_11": True}, {"dry_run": True}, {"unknown": 1}):
        r = _patch(rt, dep, body)
        assert r.status_code == 200, (body, r.text)
        assert _normalized(r.json()) == _normalized(detail)

    r = _patch(rt, dep, {"additional_headers": {"x-team": "core"}})
    assert r.status_code == 200
    # pyrestate shows header values redacted (they often carry credentials); restate-server shows them.
    shown = {"x-team": "***" if RUNTIME_KIND == "pyrestate" else "core"}
    assert r.json()["additional_headers"] == shown
    assert httpx.get(f"{rt.admin_url}/deployments/{dep}").json()["additional_headers"] == shown
    r = _patch(rt, dep, {"additional_headers": {}})
    assert "additional_headers" not in r.json()

    # A dry run discovers the new address but keeps the old one.
    r = _patch(rt, dep, {"uri": app_steps.url, "dry_run": True})
    assert r.status_code == 200 and r.json()["uri"].rstrip("/") == app_steps.url.rstrip("/")
    assert httpx.get(f"{rt.admin_url}/deployments/{dep}").json()["uri"] == detail["uri"]

    # A new address without overwrite keeps the services, even those the new endpoint does not serve.
    r = _patch(rt, dep, {"uri": app_steps.url})
    assert r.status_code == 200
    assert r.json()["uri"].rstrip("/") == app_steps.url.rstrip("/")
    assert _service_names(r.json()) == {"RestartSteps", "RestartObject"}
    with Ingress(rt.ingress_url) as ingress:
        assert json_of(ingress.call("RestartSteps", "run", "patched")) == [1, 1]

    # Switching the transport needs a rediscovery, hence a uri.
    r = _patch(rt, dep, {"uri": app_steps.url, "use_http_11": True})
    assert (r.json()["protocol_type"], r.json()["http_version"]) == ("RequestResponse", "HTTP/1.1")
    r = _patch(rt, dep, {"uri": app_steps.url, "use_http_11": False})
    assert (r.json()["protocol_type"], r.json()["http_version"]) == ("BidiStream", "HTTP/2.0")

    # overwrite: the schema is the rediscovered one.
    r = _patch(rt, dep, {"uri": app_steps.url, "overwrite": True})
    assert r.status_code == 200
    assert _service_names(r.json()) == {"RestartSteps"}
    services = httpx.get(f"{rt.admin_url}/services").json()["services"]
    assert {s["name"] for s in services} == {"RestartSteps"}


def test_patch_deployment_refusals(runtime_factory: Callable[..., Runtime], app_both: ServiceApp) -> None:
    rt = runtime_factory(DEFAULT, "patch-refusals")
    dep = register_deployment(rt.admin_url, app_both.url)["id"]

    unknown = dep[:-1] + ("A" if dep[-1] != "A" else "B")
    r = _patch(rt, unknown, {})
    assert r.status_code == 404
    assert r.json() == {
        "message": f"The requested deployment '{unknown}' does not exist",
        "restate_code": None,
    }

    r = _patch(rt, "nope", {})
    assert (r.status_code, r.headers["content-type"]) == (400, "text/plain; charset=utf-8")
    assert r.text == "Invalid URL: Cannot parse `deployment` with value `nope`: bad format"

    r = httpx.patch(
        f"{rt.admin_url}/deployments/{dep}", content=b"xx", headers={"content-type": "application/json"}
    )
    # The parser's own words follow the prefix (serde_json's on restate-server, Python's on pyrestate).
    assert r.status_code == 400 and r.text.startswith("Failed to parse the request body as JSON: ")

    closed = f"http://127.0.0.1:{free_port()}"
    r = _patch(rt, dep, {"uri": closed})
    assert r.status_code == 500
    assert r.json()["restate_code"] == "META0003"
    assert r.json()["message"].startswith(f"[META0003] [META0003] error when calling '{closed}")

    r = httpx.put(f"{rt.admin_url}/deployments/{dep}", json={})
    assert r.status_code == 405


def test_cluster_health(runtime_factory: Callable[..., Runtime]) -> None:
    rt = runtime_factory(DEFAULT, "cluster-health")
    for prefix in ("", "/v3"):
        r = httpx.get(f"{rt.admin_url}{prefix}/cluster-health")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"cluster_name": "localcluster", "metadata_cluster_health": {"members": [1]}}
    assert httpx.post(f"{rt.admin_url}/cluster-health").status_code == 405
