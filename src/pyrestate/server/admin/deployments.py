"""`/deployments`: list, register (discover the deployment, check its manifest, hand it to the core), get
and delete deployments."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from pyrestate.server import core_api
from pyrestate.server.admin import schema_json
from pyrestate.server.admin.http import (
    AdminError,
    PlainError,
    Request,
    Response,
    check_path_id,
    header_value,
    method_not_allowed,
)
from pyrestate.server.admin.manifest import ManifestInvalid, parse_manifest
from pyrestate.server.config import ServerConfig
from pyrestate.server.core_api import (
    DeploymentRecord,
    DeploymentRegistration,
)
from pyrestate.server.deployments import DeniedAddress, address_policy, redact_uri
from pyrestate.server.resource_ids import check_deployment_id

if TYPE_CHECKING:
    from pyrestate.server.admin.app import AdminApp

DiscoverFn = Callable[..., Awaitable[Any]]


async def route(app: AdminApp, req: Request) -> Response:
    match req.path:
        case []:
            if req.method == "GET":
                return Response(
                    200,
                    {
                        "deployments": [
                            schema_json.deployment_list_entry(d) for d in await app.core.list_deployments()
                        ]
                    },
                )
            if req.method == "POST":
                return await register(app, await req.body_json(), req.api_version)
            return method_not_allowed("GET,POST")
        case [dep_id]:
            check_path_id("deployment", dep_id, check_deployment_id)
            if req.method == "GET":
                return Response(
                    200, schema_json.deployment_detail(await _deployment(app, dep_id), app.config)
                )
            if req.method == "DELETE":
                return await _delete_deployment(app, dep_id, req.query)
            return method_not_allowed("GET,DELETE")
        case _:
            return Response(404)


def _default_discover(config: ServerConfig) -> DiscoverFn:
    from functools import partial

    from pyrestate.server.invoker.discovery_client import discover
    from pyrestate.server.invoker.identity import load_signer

    # Discovery requests are signed like invocations: a deployment checking identity verifies both.
    return partial(discover, signer=load_signer(config.request_identity_private_key_pem_file))


async def _deployment(app: AdminApp, dep_id: str) -> DeploymentRecord:
    try:
        return await app.core.get_deployment(dep_id)
    except core_api.NotFound:
        raise AdminError(404, f"The requested deployment '{dep_id}' does not exist") from None


async def _delete_deployment(app: AdminApp, dep_id: str, query: Mapping[str, str]) -> Response:
    if query.get("force", "false").lower() != "true":
        raise AdminError(501, "Graceful deployment deletion is not supported yet, use force=true")
    await _deployment(app, dep_id)
    await app.core.delete_deployment(dep_id)
    return Response(202)


async def register(app: AdminApp, body: Any, api_version: int | None) -> Response:
    if not isinstance(body, dict):
        raise PlainError(422, "Failed to deserialize the JSON body into the target type: expected an object")
    if "arn" in body and "uri" not in body:
        raise AdminError(400, "Lambda deployments are not supported by this server")
    uri = body.get("uri")
    if not isinstance(uri, str):
        raise PlainError(422, "Failed to deserialize the JSON body into the target type: missing field `uri`")
    shown = redact_uri(uri)
    if not (uri.startswith("http://") or uri.startswith("https://")) or len(uri.split("://", 1)[1]) == 0:
        raise AdminError(
            400,
            f"The request field 'uri' is invalid. Reason: must be an absolute http(s) URI, got '{shown}'",
        )
    try:
        await address_policy(app.config.deployment_allow, app.config.deployment_deny).check(uri)
    except DeniedAddress as e:
        raise AdminError(400, f"The request field 'uri' is invalid. Reason: {e.message}") from None
    headers = body.get("additional_headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise PlainError(
            422,
            "Failed to deserialize the JSON body into the target type: "
            "additional_headers: expected an object of strings",
        )
    use_http_11 = bool(body.get("use_http_11") or False)
    force_default = api_version == 2  # Restate defaults `force` to true only on the v2 API
    force = body.get("force")
    force = force_default if force is None else bool(force)
    dry_run = bool(body.get("dry_run") or False)
    breaking = bool(body.get("breaking") or False)

    discover = app.discover or _default_discover(app.config)
    try:
        result = discover(uri, use_http_11=use_http_11, additional_headers=headers or None)
        response = await result if inspect.isawaitable(result) else result
    except Exception as e:
        message = getattr(e, "message", None) or str(e) or type(e).__name__
        raise AdminError(
            500, f"[META0003] [META0003] error when calling '{shown}': {message}", "META0003"
        ) from None
    manifest = response.manifest
    try:
        version = getattr(response, "manifest_version", None)
        parsed = parse_manifest(manifest, version=version if isinstance(version, int) else None)
    except ManifestInvalid as e:
        code = e.restate_code or "META0014"
        message = f"[{code}] bad endpoint manifest from '{shown}': {e.message}"
        raise AdminError(400, message, code) from None
    sdk_version = header_value(response.headers, "x-restate-server")
    registration = DeploymentRegistration(
        uri=uri,
        use_http_11=use_http_11,
        additional_headers=dict(headers),
        protocol_mode=parsed.protocol_mode,
        min_protocol_version=parsed.min_protocol_version,
        max_protocol_version=parsed.max_protocol_version,
        sdk_version=sdk_version,
        services=parsed.services,
        force=force,
        dry_run=dry_run,
        breaking=breaking,
    )
    try:
        registered = await app.core.register_deployment(registration)
    except core_api.Conflict as e:
        message = str(e) or "the deployment conflicts with the registered services"
        # Schema errors carry their Restate code as a "[META00xx]" prefix, as the official server does.
        meta_code = message[1:9] if message.startswith("[META") and message[9:10] == "]" else None
        raise AdminError(409, message, meta_code) from None
    except core_api.BadRequest as e:
        raise AdminError(400, str(e)) from None
    # A dry run of a new deployment answers 201 like the real one; the CLI reads 200 as "already exists".
    status = 201 if registered.created else 200
    return Response(
        status,
        schema_json.registration_json(registered.deployment, app.config),
        [("location", f"deployments/{registered.deployment.id}")],
    )
