"""`/deployments`: list, register (discover the deployment, check its manifest, hand it to the core), get,
update (PATCH: address, headers, optionally the schema) and delete deployments."""

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
from pyrestate.server.admin.manifest import ManifestInvalid, ParsedManifest, parse_manifest
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
            if req.method == "PATCH":
                return await _update_deployment(app, dep_id, await req.body_json())
            return method_not_allowed("GET,DELETE,PATCH")
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
    headers = _headers(body)
    use_http_11 = bool(body.get("use_http_11") or False)
    force_default = api_version == 2  # Restate defaults `force` to true only on the v2 API
    force = body.get("force")
    force = force_default if force is None else bool(force)
    dry_run = bool(body.get("dry_run") or False)
    breaking = bool(body.get("breaking") or False)
    parsed, sdk_version = await _discover(app, uri, use_http_11, headers)
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


def _headers(body: dict[str, Any]) -> dict[str, str]:
    headers = body.get("additional_headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise PlainError(
            422,
            "Failed to deserialize the JSON body into the target type: "
            "additional_headers: expected an object of strings",
        )
    return headers


async def _discover(
    app: AdminApp, uri: str, use_http_11: bool, headers: dict[str, str]
) -> tuple[ParsedManifest, str | None]:
    """Check the address, ask the deployment for its manifest and validate it."""
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
    return parsed, header_value(response.headers, "x-restate-server")


async def _update_deployment(app: AdminApp, dep_id: str, body: Any) -> Response:
    """Restate 1.6's PATCH: a new `uri` or `additional_headers` runs discovery again (which must succeed)
    and updates the address, transport and headers; the services change only with `overwrite`. Without
    either field nothing is discovered and the deployment is returned unchanged."""
    if not isinstance(body, dict):
        raise PlainError(422, "Failed to deserialize the JSON body into the target type: expected an object")
    existing = await _deployment(app, dep_id)
    if "arn" in body and body.get("uri") is None:
        raise AdminError(400, "Lambda deployments are not supported by this server")
    uri, headers = body.get("uri"), body.get("additional_headers")
    if uri is None and headers is None:
        return Response(200, schema_json.deployment_detail(existing, app.config))
    if uri is not None and not isinstance(uri, str):
        raise PlainError(
            422, "Failed to deserialize the JSON body into the target type: uri: expected a string"
        )
    new_uri = existing.uri if uri is None else uri
    new_headers = dict(existing.additional_headers) if headers is None else _headers(body)
    use_http_11 = body.get("use_http_11")
    new_http_11 = existing.use_http_11 if use_http_11 is None else bool(use_http_11)
    parsed, sdk_version = await _discover(app, new_uri, new_http_11, new_headers)
    registration = DeploymentRegistration(
        uri=new_uri,
        use_http_11=new_http_11,
        additional_headers=new_headers,
        protocol_mode=parsed.protocol_mode,
        min_protocol_version=parsed.min_protocol_version,
        max_protocol_version=parsed.max_protocol_version,
        sdk_version=sdk_version,
        services=parsed.services,
        force=bool(body.get("overwrite") or False),
        dry_run=bool(body.get("dry_run") or False),
    )
    try:
        updated = await app.core.update_deployment(dep_id, registration)
    except core_api.NotFound:
        raise AdminError(404, f"The requested deployment '{dep_id}' does not exist") from None
    except core_api.Conflict as e:
        message = str(e)
        meta_code = message[1:9] if message.startswith("[META") and message[9:10] == "]" else None
        raise AdminError(409, message, meta_code) from None
    return Response(200, schema_json.deployment_detail(updated, app.config))
