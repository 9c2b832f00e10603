"""The admin HTTP API (default 127.0.0.1:9070) as an ASGI app over a ServerCore.

The same routes are served bare and under `/v2`, `/v3`, `/v4`. JSON answers carry `vary: accept-encoding`
(and are gzipped when the client asks); errors are `{"message":…,"restate_code":…}`; request-shape
errors (unparsable body, bad path parameter) are `text/plain`, as Restate's web framework answers them.
"""

from __future__ import annotations

import gzip
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

import pyrestate
from pyrestate.server import core_api
from pyrestate.server.admin import openapi, schema_json
from pyrestate.server.admin.manifest import ManifestInvalid, parse_manifest
from pyrestate.server.asgi import (
    BodyTooLarge,
    ClientDisconnected,
    Headers,
    Receive,
    Scope,
    Send,
    TrackedReceive,
    header,
    lifespan,
    raw_path,
    read_body,
    request_headers,
    send_response,
)
from pyrestate.server.config import ServerConfig
from pyrestate.server.core_api import (
    DeploymentRecord,
    DeploymentRegistration,
    InvocationCommand,
    ServerCore,
    ServicePatch,
    ServiceType,
)
from pyrestate.server.deployments import DeniedAddress, address_policy, redact_uri
from pyrestate.server.durations import DurationError, parse_duration_ms
from pyrestate.server.resource_ids import IdDecodeError, check_deployment_id, check_invocation_id

log = logging.getLogger("pyrestate.admin")

MIN_ADMIN_API_VERSION = 2
MAX_ADMIN_API_VERSION = 4
_FEATURES = (
    "scoped_promise_table_migration",
    "vqueue_obsolete_cleanup",
    "kafka_scope",
    "unique_random_seeds",
    "scoped_state_table_migration",
    "scoped_virtual_objects",
    "invoker_yield",
    "vqueues_migration_skip_completed",
    "vqueues_async_refill",
    "vqueues",
    "preflight_invocation_termination_retention",
    "protocol_v7",
)
_COMMANDS = {c.value: c for c in InvocationCommand}
_DELETE_MODES = {
    "cancel": InvocationCommand.CANCEL,
    "kill": InvocationCommand.KILL,
    "purge": InvocationCommand.PURGE,
}
MAX_ADMIN_BODY = 16 * 1024 * 1024

DiscoverFn = Callable[..., Awaitable[Any]]


class AdminError(Exception):
    """A JSON error answer `{"message": …, "restate_code": …}`."""

    def __init__(self, status: int, message: str, restate_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.restate_code = restate_code


class PlainError(Exception):
    """A text/plain error answer (request extraction failures)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Response:
    def __init__(self, status: int, body: object = None, headers: Headers | None = None) -> None:
        self.status = status
        self.body = body  # None: empty body
        self.headers = headers or []


def _default_discover(config: ServerConfig) -> DiscoverFn:
    from functools import partial

    from pyrestate.server.invoker.discovery_client import discover
    from pyrestate.server.invoker.identity import load_signer

    # Discovery requests are signed like invocations: a deployment checking identity verifies both.
    return partial(discover, signer=load_signer(config.request_identity_private_key_pem_file))


class AdminApp:
    """ASGI-3 app. `discover` defaults to the invoker's discovery client (injectable for tests)."""

    def __init__(
        self, core: ServerCore, config: ServerConfig | None = None, *, discover: DiscoverFn | None = None
    ) -> None:
        self.core = core
        self.config = config or ServerConfig()
        self._discover = discover
        self._query_runner: Any = None  # created on the first /query

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = request_headers(scope)
        tracked = TrackedReceive(receive)
        try:
            response = await self._dispatch(scope, tracked, headers)
        except AdminError as e:
            response = Response(e.status, {"message": e.message, "restate_code": e.restate_code})
        except PlainError as e:
            plain_headers = [("content-type", "text/plain; charset=utf-8"), ("vary", "accept-encoding")]
            if e.status != 413:
                await tracked.drain(MAX_ADMIN_BODY)
            elif scope.get("http_version") in ("1.0", "1.1"):
                plain_headers.append(("connection", "close"))  # the oversize body stays unread
            await send_response(send, e.status, plain_headers, e.message.encode())
            return
        except ClientDisconnected:
            return
        except core_api.Unavailable as e:  # e.g. storage refuses writes: nothing was changed
            response = Response(503, {"message": str(e) or "unavailable", "restate_code": None})
        except Exception as e:
            log.exception("admin request failed")
            response = Response(500, {"message": f"internal error: {e!r}", "restate_code": None})
        await tracked.drain(MAX_ADMIN_BODY)
        await self._send(send, response, headers)

    async def _send(self, send: Send, response: Response, request_headers_: Headers) -> None:
        out = list(response.headers)
        if isinstance(response.body, bytes):  # already encoded, content-type among the headers
            await send_response(send, response.status, [*out, ("vary", "accept-encoding")], response.body)
            return
        if response.body is None:
            await send_response(send, response.status, out)
            return
        body = json.dumps(response.body, separators=(",", ":"), ensure_ascii=False).encode()
        out.insert(0, ("content-type", "application/json"))
        out.append(("vary", "accept-encoding"))
        accept_encoding = header(request_headers_, "accept-encoding") or ""
        if "gzip" in [p.split(";")[0].strip().lower() for p in accept_encoding.split(",")]:
            body = gzip.compress(body)
            out.append(("content-encoding", "gzip"))
        await send_response(send, response.status, out, body)

    # ------------------------------------------------------------------ routing

    async def _dispatch(self, scope: Scope, receive: Receive, headers: Headers) -> Response:
        method = str(scope["method"]).upper()
        segments = [unquote(s) for s in raw_path(scope).split("/")[1:]]
        if segments and segments[-1] == "" and len(segments) > 1:
            segments = segments[:-1]
        api_version: int | None = None
        first = segments[0] if segments else ""
        # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
        if len(first) >= 2 and first[0] == "v" and first[1:].isascii() and first[1:].isdigit():
            api_version = int(first[1:]) if len(first) <= 10 else MAX_ADMIN_API_VERSION + 1
            if not MIN_ADMIN_API_VERSION <= api_version <= MAX_ADMIN_API_VERSION:
                raise AdminError(
                    400,
                    f"Unsupported admin API version v{api_version}, supported versions are "
                    f"v{MIN_ADMIN_API_VERSION} to v{MAX_ADMIN_API_VERSION}",
                )
            segments = segments[1:]
        query = dict(
            parse_qsl(bytes(scope.get("query_string", b"")).decode("latin-1"), keep_blank_values=True)
        )

        async def body_json() -> Any:
            ct = header(headers, "content-type")
            if ct is None or ct.split(";")[0].strip().lower() != "application/json":
                raise PlainError(415, "Expected request with `Content-Type: application/json`")
            try:
                raw = await read_body(receive, headers, MAX_ADMIN_BODY)
            except BodyTooLarge:
                raise PlainError(413, "Failed to buffer the request body: length limit exceeded") from None
            try:
                return json.loads(raw)
            except ValueError as e:
                raise PlainError(400, f"Failed to parse the request body as JSON: {e}") from None
            except RecursionError:
                raise PlainError(400, "Failed to parse the request body as JSON: nested too deeply") from None

        match segments:
            case ["health"]:
                return self._only(method, "GET") or Response(200)
            case ["metrics"]:
                return self._only(method, "GET") or await self._metrics()
            case ["version"]:
                return self._only(method, "GET") or Response(200, self._version())
            case ["openapi"]:
                return self._only(method, "GET") or Response(
                    200, openapi.admin_openapi(str(self._version()["version"]))
                )
            case ["deployments"]:
                if method == "GET":
                    return Response(
                        200,
                        {
                            "deployments": [
                                schema_json.deployment_list_entry(d)
                                for d in await self.core.list_deployments()
                            ]
                        },
                    )
                if method == "POST":
                    return await self._register(await body_json(), api_version)
                return _method_not_allowed("GET,POST")
            case ["deployments", dep_id]:
                _check_path_id("deployment", dep_id, check_deployment_id)
                if method == "GET":
                    return Response(
                        200, schema_json.deployment_detail(await self._deployment(dep_id), self.config)
                    )
                if method == "DELETE":
                    return await self._delete_deployment(dep_id, query)
                return _method_not_allowed("GET,DELETE")
            case ["services"]:
                return self._only(method, "GET") or Response(200, {"services": await self._services_json()})
            case ["services", name]:
                if method == "GET":
                    return Response(200, await self._service_json(name))
                if method == "PATCH":
                    return await self._patch_service(name, await body_json())
                return _method_not_allowed("GET,PATCH")
            case ["services", name, "handlers"]:
                if denied := self._only(method, "GET"):
                    return denied
                svc = self._service(name)
                return Response(
                    200, {"handlers": [schema_json.handler_json(h) for h in svc.handlers.values()]}
                )
            case ["services", name, "handlers", handler_name]:
                if denied := self._only(method, "GET"):
                    return denied
                svc = self._service(name)
                h = svc.handlers.get(handler_name)
                if h is None:
                    raise AdminError(
                        404, f"The requested handler '{handler_name}' on service '{name}' does not exist"
                    )
                return Response(200, schema_json.handler_json(h))
            case ["services", name, "openapi"]:
                return self._only(method, "GET") or Response(
                    200, openapi.service_openapi(self._service(name), self.config.ingress_endpoint)
                )
            case ["services", name, "state"]:
                if denied := self._only(method, "POST"):
                    return denied
                return await self._set_state(name, await body_json())
            case ["invocations", inv_id]:
                if method != "DELETE":
                    return _method_not_allowed("DELETE")
                mode = query.get("mode", "cancel").lower()
                command = _DELETE_MODES.get(mode)
                if command is None:
                    raise PlainError(
                        400,
                        f"Failed to deserialize query string: unknown variant `{query.get('mode')}`"
                        ", expected one of `Cancel`, `Kill`, `Purge`",
                    )
                await self._invocation_command(inv_id, command, None)
                return Response(202)
            case ["invocations", inv_id, verb]:
                if method != "PATCH":
                    return _method_not_allowed("PATCH")
                command = _COMMANDS.get(verb)
                if command is None:
                    if verb == "restart-as-new":
                        raise AdminError(501, "restart-as-new is not supported by this server")
                    return Response(404, None)
                outcome = await self._invocation_command(inv_id, command, query.get("deployment"))
                return Response(202 if outcome is core_api.CommandOutcome.ACCEPTED else 200)
            case ["query"]:
                if denied := self._only(method, "POST"):
                    return denied
                return await self._sql_query(headers, await body_json())
            case ["ui", *rest]:  # the HTML operator console (pyrestate.server.console)
                from pyrestate.server.console import console_origins, serve_console

                origins = console_origins(self.config.admin_bind, self.config.admin_url)
                reply = await serve_console(
                    self.core,
                    self._sql_query,
                    origins,
                    method,
                    rest,
                    query,
                    receive,
                    headers,
                    register=lambda body: self._register(body, None),
                    ingress_endpoint=self.config.ingress_endpoint,
                )
                return Response(reply.status, reply.body, reply.headers)
            case _:
                return Response(404)

    @staticmethod
    def _only(method: str, allowed: str) -> Response | None:
        return None if method == allowed else _method_not_allowed(allowed)

    # ------------------------------------------------------------------ handlers

    async def _metrics(self) -> Response:
        from pyrestate.server import metrics

        if metrics.gauges.invocations_stale():
            sql = "SELECT target_service_name, status, count(*) AS n FROM sys_invocation GROUP BY 1, 2"
            answer = await self._sql_query([("accept", "application/json")], {"query": sql})
            if answer.status == 200 and isinstance(answer.body, bytes):
                rows = json.loads(answer.body)["rows"]
                metrics.gauges.set_invocations(
                    (r["target_service_name"], r["status"], int(r["n"])) for r in rows
                )
        return Response(200, metrics.exposition(), [("content-type", metrics.CONTENT_TYPE)])

    async def _sql_query(self, headers: Headers, body: Any) -> Response:
        from pyrestate.server.query import QueryLimits, QueryRunner, answer_query

        if self._query_runner is None:
            concurrency = QueryLimits().concurrency
            per_query = max(self.config.query_memory_bytes // concurrency, 16 * 1024 * 1024)
            self._query_runner = QueryRunner(QueryLimits(memory_bytes=per_query, concurrency=concurrency))
        make_snapshot = getattr(self.core, "query_snapshot", None)
        snapshot = make_snapshot() if make_snapshot is not None and isinstance(body, dict) else None
        answer = await answer_query(snapshot, self._query_runner, body, header(headers, "accept"))
        return Response(answer.status, answer.body, [("content-type", answer.content_type)])

    def _version(self) -> dict[str, Any]:
        return {
            "version": pyrestate.__version__ if hasattr(pyrestate, "__version__") else _package_version(),
            "min_admin_api_version": MIN_ADMIN_API_VERSION,
            "max_admin_api_version": MAX_ADMIN_API_VERSION,
            "ingress_endpoint": self.config.ingress_endpoint,
            "features": dict.fromkeys(_FEATURES, False),
        }

    async def _deployment(self, dep_id: str) -> DeploymentRecord:
        try:
            return await self.core.get_deployment(dep_id)
        except core_api.NotFound:
            raise AdminError(404, f"The requested deployment '{dep_id}' does not exist") from None

    async def _delete_deployment(self, dep_id: str, query: Mapping[str, str]) -> Response:
        if query.get("force", "false").lower() != "true":
            raise AdminError(501, "Graceful deployment deletion is not supported yet, use force=true")
        await self._deployment(dep_id)
        await self.core.delete_deployment(dep_id)
        return Response(202)

    def _service(self, name: str) -> core_api.ServiceSchema:
        svc = self.core.lookup_service(name)
        if svc is None:
            raise AdminError(404, f"The requested service '{name}' does not exist")
        return svc

    async def _deployments_by_id(self) -> dict[str, DeploymentRecord]:
        return {d.id: d for d in await self.core.list_deployments()}

    async def _services_json(self) -> list[dict[str, Any]]:
        deployments = await self._deployments_by_id()
        return [
            schema_json.service_json(s, self.config, deployments.get(s.deployment_id))
            for s in self.core.list_services()
        ]

    async def _service_json(self, name: str) -> dict[str, Any]:
        svc = self._service(name)
        deployments = await self._deployments_by_id()
        return schema_json.service_json(svc, self.config, deployments.get(svc.deployment_id))

    async def _patch_service(self, name: str, body: Any) -> Response:
        self._service(name)
        if not isinstance(body, dict):
            raise PlainError(
                422, "Failed to deserialize the JSON body into the target type: expected an object"
            )
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
            updated = await self.core.update_service(name, ServicePatch(**fields))
        except core_api.NotFound:
            raise AdminError(404, f"The requested service '{name}' does not exist") from None
        except core_api.BadRequest as e:
            raise AdminError(400, str(e)) from None
        deployments = await self._deployments_by_id()
        return Response(
            200, schema_json.service_json(updated, self.config, deployments.get(updated.deployment_id))
        )

    async def _set_state(self, name: str, body: Any) -> Response:
        svc = self._service(name)
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
            raise AdminError(
                400, f"The service '{name}' is not a virtual object or workflow and has no state"
            )
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
        await self.core.set_state(name, body["object_key"], state)
        return Response(202)

    async def _invocation_command(
        self, inv_id: str, command: InvocationCommand, deployment_id: str | None
    ) -> core_api.CommandOutcome:
        try:
            check_invocation_id(inv_id)
        except IdDecodeError as e:
            raise AdminError(
                400, f"The request field 'invocation_id' is invalid. Reason: {e.reason}"
            ) from None
        try:
            return await self.core.invocation_command(inv_id, command, deployment_id=deployment_id)
        except core_api.NotFound:
            raise AdminError(404, f"The requested invocation '{inv_id}' does not exist") from None
        except core_api.Conflict as e:
            if str(e):
                raise AdminError(409, str(e)) from None
            if command in (InvocationCommand.PURGE, InvocationCommand.PURGE_JOURNAL):
                raise AdminError(409, f"The invocation '{inv_id}' is not yet completed.") from None
            raise AdminError(409, f"The invocation '{inv_id}' was already completed.") from None
        except core_api.BadRequest as e:
            raise AdminError(400, str(e)) from None
        except core_api.Unavailable as e:
            raise AdminError(503, str(e) or "unavailable") from None

    # ------------------------------------------------------------------ registration

    async def _register(self, body: Any, api_version: int | None) -> Response:
        if not isinstance(body, dict):
            raise PlainError(
                422, "Failed to deserialize the JSON body into the target type: expected an object"
            )
        if "arn" in body and "uri" not in body:
            raise AdminError(400, "Lambda deployments are not supported by this server")
        uri = body.get("uri")
        if not isinstance(uri, str):
            raise PlainError(
                422, "Failed to deserialize the JSON body into the target type: missing field `uri`"
            )
        shown = redact_uri(uri)
        if not (uri.startswith("http://") or uri.startswith("https://")) or len(uri.split("://", 1)[1]) == 0:
            raise AdminError(
                400,
                f"The request field 'uri' is invalid. Reason: must be an absolute http(s) URI, got '{shown}'",
            )
        try:
            await address_policy(self.config.deployment_allow, self.config.deployment_deny).check(uri)
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

        discover = self._discover or _default_discover(self.config)
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
        sdk_version = _header_value(response.headers, "x-restate-server")
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
            registered = await self.core.register_deployment(registration)
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
            schema_json.registration_json(registered.deployment, self.config),
            [("location", f"deployments/{registered.deployment.id}")],
        )


def _method_not_allowed(allow: str) -> Response:
    return Response(405, None, [("allow", allow)])


def _check_path_id(what: str, value: str, check: Callable[[str], str]) -> None:
    try:
        check(value)
    except IdDecodeError as e:
        raise PlainError(
            400, f"Invalid URL: Cannot parse `{what}` with value `{value}`: {e.reason}"
        ) from None


def _header_value(headers: Any, name: str) -> str | None:
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    for k, v in items:
        k_s = k.decode("latin-1") if isinstance(k, bytes) else str(k)
        if k_s.lower() == name:
            return v.decode("latin-1") if isinstance(v, bytes) else str(v)
    return None


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyrestate")
    except PackageNotFoundError:
        return "0.0.0"
