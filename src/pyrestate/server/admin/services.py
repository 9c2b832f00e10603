"""`/services`: list, get and patch services, their handlers and OpenAPI document, and replace an object's
state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyrestate.server import core_api, openapi
from pyrestate.server.admin import schema_json
from pyrestate.server.admin.http import (
    AdminError,
    PlainError,
    Request,
    Response,
    method_not_allowed,
    only,
)
from pyrestate.server.core_api import (
    DeploymentRecord,
    ServicePatch,
    ServiceType,
)
from pyrestate.server.durations import DurationError, parse_duration_ms

if TYPE_CHECKING:
    from pyrestate.server.admin.app import AdminApp


async def route(app: AdminApp, req: Request) -> Response:
    method = req.method
    match req.path:
        case []:
            return only(method, "GET") or Response(200, {"services": await _services_json(app)})
        case [name]:
            if method == "GET":
                return Response(200, await _service_json(app, name))
            if method == "PATCH":
                return await _patch_service(app, name, await req.body_json())
            return method_not_allowed("GET,PATCH")
        case [name, "handlers"]:
            if denied := only(method, "GET"):
                return denied
            svc = _service(app, name)
            return Response(200, {"handlers": [schema_json.handler_json(h) for h in svc.handlers.values()]})
        case [name, "handlers", handler_name]:
            if denied := only(method, "GET"):
                return denied
            svc = _service(app, name)
            h = svc.handlers.get(handler_name)
            if h is None:
                raise AdminError(
                    404, f"The requested handler '{handler_name}' on service '{name}' does not exist"
                )
            return Response(200, schema_json.handler_json(h))
        case [name, "openapi"]:
            return only(method, "GET") or Response(
                200, openapi.service_openapi(_service(app, name), app.config.ingress_endpoint)
            )
        case [name, "state"]:
            if denied := only(method, "POST"):
                return denied
            return await _set_state(app, name, await req.body_json())
        case _:
            return Response(404)


def _service(app: AdminApp, name: str) -> core_api.ServiceSchema:
    svc = app.core.lookup_service(name)
    if svc is None:
        raise AdminError(404, f"The requested service '{name}' does not exist")
    return svc


async def _deployments_by_id(app: AdminApp) -> dict[str, DeploymentRecord]:
    return {d.id: d for d in await app.core.list_deployments()}


async def _services_json(app: AdminApp) -> list[dict[str, Any]]:
    deployments = await _deployments_by_id(app)
    return [
        schema_json.service_json(s, app.config, deployments.get(s.deployment_id))
        for s in app.core.list_services()
    ]


async def _service_json(app: AdminApp, name: str) -> dict[str, Any]:
    svc = _service(app, name)
    deployments = await _deployments_by_id(app)
    return schema_json.service_json(svc, app.config, deployments.get(svc.deployment_id))


async def _patch_service(app: AdminApp, name: str, body: Any) -> Response:
    _service(app, name)
    if not isinstance(body, dict):
        raise PlainError(422, "Failed to deserialize the JSON body into the target type: expected an object")
    fields: dict[str, Any] = {}
    if "public" in body and body["public"] is not None:
        if not isinstance(body["public"], bool):
            raise PlainError(
                422,
                "Failed to deserialize the JSON body into the target type: "
                "public: invalid type, expected a boolean",
            )
        fields["public"] = body["public"]
    for key in (
        "idempotency_retention",
        "workflow_completion_retention",
        "journal_retention",
        "inactivity_timeout",
        "abort_timeout",
    ):
        value = body.get(key)
        if value is None:
            continue
        try:
            if not isinstance(value, str):
                raise DurationError("expected a duration string")
            ms = parse_duration_ms(value)
        except DurationError as e:
            raise PlainError(
                422, f"Failed to deserialize the JSON body into the target type: {key}: {e}"
            ) from None
        fields[f"{key}_ms"] = ms
    try:
        updated = await app.core.update_service(name, ServicePatch(**fields))
    except core_api.NotFound:
        raise AdminError(404, f"The requested service '{name}' does not exist") from None
    except core_api.BadRequest as e:
        raise AdminError(400, str(e)) from None
    deployments = await _deployments_by_id(app)
    return Response(
        200, schema_json.service_json(updated, app.config, deployments.get(updated.deployment_id))
    )


async def _set_state(app: AdminApp, name: str, body: Any) -> Response:
    svc = _service(app, name)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("object_key"), str)
        or not isinstance(body.get("new_state"), dict)
    ):
        raise PlainError(
            422,
            "Failed to deserialize the JSON body into the target type: "
            'expected {"object_key": string, "new_state": {key: [bytes]}}',
        )
    if svc.ty is ServiceType.SERVICE:
        raise AdminError(400, f"The service '{name}' is not a virtual object or workflow and has no state")
    state: dict[str, bytes] = {}
    for k, v in body["new_state"].items():
        try:
            # Only a list of byte values: bytes(<int>) would allocate that many zero bytes.
            if not isinstance(v, list):
                raise TypeError(type(v).__name__)
            state[k] = bytes(v)
        except (TypeError, ValueError):
            raise PlainError(
                422,
                "Failed to deserialize the JSON body into the target type: "
                f"new_state.{k}: expected an array of bytes",
            ) from None
    await app.core.set_state(name, body["object_key"], state)
    return Response(202)
