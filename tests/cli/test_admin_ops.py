"""Admin operations on a real `pyrestate server`: OpenAPI documents, service patch, state replacement,
deployment removal (shapes as in shared/specs/real-restate-behavior.md §3)."""

from __future__ import annotations

import httpx
import pytest
from cli_support import Stack
from openapi_spec_validator import validate

from pyrestate.server.core_api import HandlerSchema, HandlerType, ServiceSchema, ServiceType
from pyrestate.server.openapi import admin_openapi, service_openapi
from pyrestate.testing import eventually, register_deployment


def test_service_openapi_is_valid_and_covers_every_handler(stack: Stack) -> None:
    for name in ("Counter", "Greeter", "Waiter"):
        r = httpx.get(f"{stack.admin_url}/v4/services/{name}/openapi")
        assert r.status_code == 200, r.text
        validate(r.json())
    counter = httpx.get(f"{stack.admin_url}/services/Counter/openapi").json()
    assert counter["openapi"] == "3.1.0" and counter["info"]["title"] == "Counter"
    assert set(counter["paths"]) == {
        "/Counter/{key}/add",
        "/Counter/{key}/add/send",
        "/Counter/{key}/get",
        "/Counter/{key}/get/send",
    }
    add = counter["paths"]["/Counter/{key}/add"]["post"]
    assert add["requestBody"]["content"]["application/json"]["schema"] == {"type": "integer"}
    assert add["responses"]["200"]["content"]["application/json"]["schema"] == {"type": "integer"}
    assert "requestBody" not in counter["paths"]["/Counter/{key}/get"]["post"]
    send = counter["paths"]["/Counter/{key}/add/send"]["post"]
    assert "202" in send["responses"]
    greeter = httpx.get(f"{stack.admin_url}/services/Greeter/openapi").json()
    assert set(greeter["paths"]) == {"/Greeter/greet", "/Greeter/greet/send"}
    assert greeter["servers"] == [{"url": stack.server.ingress_url}]
    missing = httpx.get(f"{stack.admin_url}/services/NoSuch/openapi")
    assert missing.status_code == 404 and "NoSuch" in missing.json()["message"]


def test_service_openapi_moves_defs_to_components() -> None:
    model = {
        "type": "object",
        "properties": {
            "item": {"$ref": "#/$defs/Item"},
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
        },
        "$defs": {"Item": {"type": "object", "properties": {"sku": {"type": "string"}}}},
    }
    other = {"$ref": "#/$defs/Item", "$defs": {"Item": {"type": "integer"}}}  # same name, different schema
    handlers = {
        "order": HandlerSchema(
            "order", HandlerType.WORKFLOW, input_json_schema=model, output_json_schema=other
        ),
        "hidden": HandlerSchema("hidden", HandlerType.SHARED, public=False),
    }
    doc = service_openapi(ServiceSchema("Shop", ServiceType.WORKFLOW, handlers, "dp_x", 3))
    validate(doc)
    assert set(doc["paths"]) == {"/Shop/{key}/order", "/Shop/{key}/order/send"}
    op = doc["paths"]["/Shop/{key}/order"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert "$defs" not in body and body["properties"]["item"] == {"$ref": "#/components/schemas/Item"}
    out_ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert out_ref != "#/components/schemas/Item"
    assert doc["components"]["schemas"][out_ref.rsplit("/", 1)[1]] == {"type": "integer"}
    assert doc["components"]["schemas"]["Item"]["properties"]["sku"] == {"type": "string"}


def test_admin_openapi_is_valid_and_lists_served_routes(stack: Stack) -> None:
    r = httpx.get(f"{stack.admin_url}/openapi")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    assert doc == httpx.get(f"{stack.admin_url}/v4/openapi").json()
    for path in (
        "/deployments/{deployment}",
        "/services/{service}/openapi",
        "/services/{service}/state",
        "/invocations/{invocation_id}/cancel",
        "/query",
        "/openapi",
    ):
        assert path in doc["paths"], path
    validate(admin_openapi("0.0.0"))


def test_patch_set_state_and_delete_deployment(fresh_stack: Stack) -> None:
    admin = httpx.Client(base_url=fresh_stack.admin_url, timeout=10)
    dep_id = register_deployment(fresh_stack.admin_url, fresh_stack.app.url)["id"]

    # PATCH: 200 with the updated service JSON, visible on later reads.
    r = admin.patch(
        "/v4/services/Greeter", json={"public": False, "inactivity_timeout": "2s", "journal_retention": "1h"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["public"], r.json()["inactivity_timeout"], r.json()["journal_retention"]) == (
        False,
        "2s",
        "1h",
    )
    assert admin.get("/services/Greeter").json()["public"] is False
    bad = admin.patch("/services/Greeter", json={"inactivity_timeout": "soon"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/plain")
    assert admin.patch("/services/NoSuch", json={"public": True}).status_code == 404

    # POST state: 202 and empty; the handler then reads the bytes "42".
    r = admin.post("/services/Counter/state", json={"object_key": "c9", "new_state": {"count": [52, 50]}})
    assert (r.status_code, r.content) == (202, b"")
    eventually(lambda: _assert_get(fresh_stack, "c9", 42), timeout=10)
    assert admin.post("/services/Greeter/state", json={"object_key": "x", "new_state": {}}).status_code == 400

    # DELETE: only forced removal is supported; afterwards the services are gone.
    assert admin.delete(f"/deployments/{dep_id}").status_code == 501
    r = admin.delete(f"/v4/deployments/{dep_id}", params={"force": "true"})
    assert r.status_code == 202, r.text
    assert admin.get("/deployments").json() == {"deployments": []}
    assert admin.get("/services/Counter").status_code == 404
    assert admin.get(f"/deployments/{dep_id}").status_code == 404
    admin.close()


def _assert_get(stack: Stack, key: str, expected: int) -> None:
    r = stack.ingress.post(f"/Counter/{key}/get")
    assert r.status_code == 200 and r.json() == expected, r.text


@pytest.mark.parametrize("verb", ["cancel", "kill", "purge"])
def test_invocation_commands_on_unknown_ids(stack: Stack, verb: str) -> None:
    r = httpx.patch(f"{stack.admin_url}/invocations/not-an-id/{verb}")
    assert r.status_code == 400 and "invocation_id" in r.json()["message"]
