"""The ingress HTTP API (default 127.0.0.1:8080) as an ASGI app over a ServerCore.

Responses follow the observed behaviour of Restate 1.7 byte for byte where it was captured: header
order, compact JSON bodies, `x-restate-id`, `idempotency-expires`, `x-restate-error-source`, and the CORS
`vary` / `access-control-allow-credentials` pair on every response when every origin is allowed (Restate's
behaviour, `--ingress-cors-origins '*'`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from pyrestate.protocol import ids as protocol_ids
from pyrestate.protocol.errors import ErrorCode
from pyrestate.server import core_api, metrics, tracing
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
from pyrestate.server.core_api import (
    ById,
    ByIdempotencyKey,
    ByWorkflow,
    Failure,
    HandlerSchema,
    HandlerType,
    IngressInvocation,
    InvocationQuery,
    InvocationResult,
    InvocationTarget,
    ServerCore,
    ServiceSchema,
    ServiceType,
    Success,
)
from pyrestate.server.durations import rfc3339_millis, rfc3339_nanos
from pyrestate.server.ingress import errors
from pyrestate.server.ingress.errors import IngressError
from pyrestate.server.ingress.paths import (
    AwakeableRoute,
    HealthRoute,
    LookupRoute,
    Route,
    ServiceRoute,
    TargetInBodyRoute,
    delay_from_query,
    parse_path,
)
from pyrestate.server.resource_ids import IdDecodeError, check_awakeable_id, check_invocation_id
from pyrestate.server.validation import InputValidationError, output_content_type, validate_input

log = logging.getLogger("pyrestate.ingress")

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_KEY_BYTES = 16 * 1024
# hyper's defaults, what the official server answers 431 above over HTTP/1.1.
DEFAULT_MAX_HEADERS = 100
DEFAULT_MAX_HEADERS_BYTES = 512 * 1024
VARY = "origin, access-control-request-method, access-control-request-headers"
JSON = "application/json"
# Request headers that describe the HTTP exchange, not the invocation: never forwarded to the handler.
_NOT_FORWARDED = frozenset({"host", "connection", "idempotency-key", "idempotency-expires"})


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class IngressApp:
    """ASGI-3 app. `max_body_bytes` bounds every request body (413 above it), `max_headers` and
    `max_headers_bytes` the header section (431), `max_key_bytes` an object key in the path (400).

    CORS: browsers may read answers (with credentials) only for the origins in `cors_origins`; `*` reflects
    any origin, as Restate does. By default none: a page the operator opens elsewhere cannot read what the
    ingress answers."""

    def __init__(
        self,
        core: ServerCore,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_key_bytes: int = DEFAULT_MAX_KEY_BYTES,
        max_headers: int = DEFAULT_MAX_HEADERS,
        max_headers_bytes: int = DEFAULT_MAX_HEADERS_BYTES,
        cors_origins: Iterable[str] = (),
    ) -> None:
        self.core = core
        self.max_body_bytes = max_body_bytes
        self.max_key_bytes = max_key_bytes
        self.max_headers = max_headers
        self.max_headers_bytes = max_headers_bytes
        self.cors_any = "*" in cors_origins
        self.cors_origins = frozenset(o.strip().rstrip("/").lower() for o in cors_origins if o.strip() != "*")

    def _cors_allowed(self, origin: str | None) -> bool:
        return origin is not None and (self.cors_any or origin.rstrip("/").lower() in self.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        headers = request_headers(scope)
        origin = header(headers, "origin")
        method = str(scope["method"]).upper()
        tracked = TrackedReceive(receive)
        try:
            if method == "OPTIONS" and header(headers, "access-control-request-method") is not None:
                await self._preflight(send, headers, origin)
                return
            self._check_headers(scope)
            status, out_headers, body = await self._dispatch(scope, tracked, method, headers)
        except IngressError as e:
            status, out_headers, body = _ingress_error(e)
        except ClientDisconnected:
            metrics.observe_ingress(metrics.ingress_kind(raw_path(scope)), 499, started)
            return
        except Exception as e:  # a bug here must not take the listener down; the client gets a 500
            log.exception("ingress request failed")
            status, out_headers, body = _ingress_error(errors.internal(repr(e)))
        if status != 413:
            await tracked.drain(self.max_body_bytes)
        elif scope.get("http_version") in ("1.0", "1.1"):
            # The rest of the oversize body stays unread, so this HTTP/1 connection cannot carry another
            # request: say so, or a pooling client would send its next request into a closing socket.
            out_headers.append(("connection", "close"))
        out_headers.append(("vary", VARY))
        if self.cors_any or self._cors_allowed(origin):
            out_headers.append(("access-control-allow-credentials", "true"))
        if origin is not None and self._cors_allowed(origin):
            out_headers.append(("access-control-allow-origin", origin))
        await send_response(send, status, out_headers, body)
        metrics.observe_ingress(metrics.ingress_kind(raw_path(scope)), status, started)

    def _check_headers(self, scope: Scope) -> None:
        # The HTTP layers below bound a head only loosely (hypercorn: per read; HTTP/1.1 fast path: 64 KiB),
        # so the limits are applied here, the same whatever the protocol and however the head arrived.
        raw = scope.get("headers", ())
        if len(raw) > self.max_headers:
            raise errors.too_many_headers(len(raw), self.max_headers)
        size = sum(len(n) + len(v) for n, v in raw)
        if size > self.max_headers_bytes:
            raise errors.headers_too_large(size, self.max_headers_bytes)

    async def _preflight(self, send: Send, headers: Headers, origin: str | None) -> None:
        if not self.cors_any and not self._cors_allowed(origin):
            status, out_headers, body = _ingress_error(
                IngressError(403, f"cross-origin requests from {origin or 'no origin'} are not allowed "
                             "(see --ingress-cors-origins)")
            )
            await send_response(send, status, [*out_headers, ("vary", VARY)], body)
            return
        out: Headers = [("access-control-allow-credentials", "true"), ("vary", VARY)]
        requested_headers = header(headers, "access-control-request-headers")
        if requested_headers is not None:
            out.append(("access-control-allow-headers", requested_headers))
        out.append(("access-control-allow-methods", header(headers, "access-control-request-method") or ""))
        if origin is not None:
            out.append(("access-control-allow-origin", origin))
        await send_response(send, 200, out)

    async def _dispatch(
        self, scope: Scope, receive: Receive, method: str, headers: Headers
    ) -> tuple[int, Headers, bytes]:
        path = raw_path(scope)
        route: Route = parse_path(path, self._service_type)
        query_string = bytes(scope.get("query_string", b"")).decode("latin-1")
        if isinstance(route, HealthRoute):
            names = [s.name for s in self.core.list_services()]
            return 200, [("content-type", JSON)], _json({"services": names})
        if isinstance(route, ServiceRoute):
            if method not in ("GET", "POST"):
                raise errors.method_not_allowed()
            body = await self._body(receive, headers)
            ingress_path = path + (f"?{query_string}" if query_string else "")
            return await self._invoke(route, headers, body, query_string, ingress_path, scope.get("client"))
        if isinstance(route, AwakeableRoute):
            if method != "POST":
                raise errors.method_not_allowed()
            body = await self._body(receive, headers)
            return await self._complete_awakeable(route, body)
        if isinstance(route, LookupRoute):
            if method != "GET":
                raise errors.method_not_allowed()
            return await self._lookup(route.op, route.query)
        if isinstance(route, TargetInBodyRoute):
            if method != "POST":
                raise errors.method_not_allowed()
            body = await self._body(receive, headers)
            return await self._target_in_body(route, body)
        raise errors.not_found()

    def _service_type(self, name: str) -> ServiceType | None:
        svc = self.core.lookup_service(name)
        return None if svc is None else svc.ty

    async def _body(self, receive: Receive, headers: Headers) -> bytes:
        try:
            return await read_body(receive, headers, self.max_body_bytes)
        except BodyTooLarge:
            raise errors.payload_too_large(self.max_body_bytes) from None

    # ------------------------------------------------------------------ calls and sends

    async def _invoke(
        self,
        route: ServiceRoute,
        headers: Headers,
        body: bytes,
        query_string: str,
        ingress_path: str,
        client: tuple[str, int] | None = None,
    ) -> tuple[int, Headers, bytes]:
        if route.key is not None and len(route.key.encode()) > self.max_key_bytes:
            raise errors.key_too_long(len(route.key.encode()), self.max_key_bytes)
        svc = self.core.lookup_service(route.service)
        if svc is None:
            raise errors.service_not_found(route.service)
        handler = svc.handlers.get(route.handler)
        if handler is None:
            raise errors.handler_not_found(route.service, route.handler)
        if not svc.public or not handler.public:
            raise errors.private_service()
        delay_ms = delay_from_query(query_string)
        if delay_ms is not None and not route.send:
            raise errors.delay_on_call()
        idempotency_key = header(headers, "idempotency-key") or None
        if idempotency_key is not None and handler.ty is HandlerType.WORKFLOW:
            raise errors.idempotency_key_on_workflow()
        try:
            validate_input(handler, header(headers, "content-type"), body)
        except InputValidationError as e:
            raise errors.input_validation(str(e)) from None

        traced = None
        if tracing.sink is not None:
            traced = tracing.ingress_context(header(headers, "traceparent"))
            started_ns = time.time_ns()
        forwarded = [("x-restate-ingress-path", ingress_path)]
        forwarded += [(n, v) for n, v in headers if n not in _NOT_FORWARDED]
        invocation = IngressInvocation(
            target=InvocationTarget(service=svc.name, handler=handler.name, key=route.key),
            body=body,
            headers=tuple(forwarded),
            idempotency_key=idempotency_key,
            user_supplied_idempotency_key=idempotency_key is not None,
            delay_ms=delay_ms if route.send else None,
            trace=None if traced is None else traced.trace,
        )
        if route.send:
            try:
                receipt = await self.core.send(invocation)
            except Exception as e:
                raise errors.from_core(e) from e
            if traced is not None and tracing.sink is not None:
                tracing.sink.ingress(
                    traced, receipt.invocation_id, svc.name, handler.name, route.key, client, started_ns
                )
            payload: dict[str, Any] = {"invocationId": receipt.invocation_id}
            if receipt.execution_time_ms is not None:
                payload["executionTime"] = rfc3339_nanos(receipt.execution_time_ms)
            payload["status"] = receipt.status.value
            return 202, [("content-type", JSON), ("x-restate-id", receipt.invocation_id)], _json(payload)
        try:
            result = await self.core.call(invocation)
        except Exception as e:
            raise errors.from_core(e) from e
        if traced is not None and tracing.sink is not None:
            tracing.sink.ingress(
                traced, result.invocation_id, svc.name, handler.name, route.key, client, started_ns
            )
        return _result_response(result, handler)

    # ------------------------------------------------------------------ attach / output

    async def _lookup(self, op: str, query: InvocationQuery) -> tuple[int, Headers, bytes]:
        if isinstance(query, ById):
            try:
                check_invocation_id(query.invocation_id)
            except IdDecodeError as e:
                raise errors.bad_invocation_id(query.invocation_id, e.reason) from None
        try:
            result = await (self.core.attach(query) if op == "attach" else self.core.get_output(query))
        except core_api.NotFound as e:
            if op != "attach":
                raise errors.from_core(e, lookup=True) from e
            # Restate answers an attach to an unknown invocation as the invocation's own 404 failure
            # (`x-restate-id`, source "invocation"); /output keeps the ingress-style answer.
            result = InvocationResult(_query_invocation_id(query), Failure(404, "not found"))
        except Exception as e:
            raise errors.from_core(e, lookup=True) from e
        return _result_response(result, self._handler_of(query))

    def _handler_of(self, query: InvocationQuery) -> HandlerSchema | None:
        """The handler whose output rules shape the response, when the query names one."""
        if isinstance(query, ByIdempotencyKey):
            svc = self.core.lookup_service(query.service)
            return None if svc is None else svc.handlers.get(query.handler)
        if isinstance(query, ByWorkflow):
            svc = self.core.lookup_service(query.workflow)
            if svc is not None:
                for h in svc.handlers.values():
                    if h.ty is HandlerType.WORKFLOW:
                        return h
        return None

    async def _target_in_body(self, route: TargetInBodyRoute, body: bytes) -> tuple[int, Headers, bytes]:
        query = _query_from_body(body)
        if route.op != "lookup":
            return await self._lookup(route.op, query)
        return 200, [("content-type", JSON)], _json({"invocationId": _query_invocation_id(query)})

    # ------------------------------------------------------------------ awakeables

    async def _complete_awakeable(self, route: AwakeableRoute, body: bytes) -> tuple[int, Headers, bytes]:
        try:
            check_awakeable_id(route.awakeable_id)
        except IdDecodeError as e:
            raise errors.bad_awakeable_id(route.awakeable_id, e.reason) from None
        outcome: core_api.Outcome = (
            Success(body)
            if route.op == "resolve"
            else Failure(ErrorCode.INTERNAL, body.decode("utf-8", errors="replace"))
        )
        try:
            await self.core.complete_awakeable(route.awakeable_id, outcome)
        except core_api.BadRequest as e:
            raise errors.bad_awakeable_id(route.awakeable_id, str(e) or "bad format") from None
        except Exception as e:
            raise errors.from_core(e) from e
        return 202, [], b""


def _query_invocation_id(query: InvocationQuery) -> str:
    """The id an invocation query designates (ids of idempotent requests and workflow runs are derived)."""
    if isinstance(query, ById):
        return query.invocation_id
    if isinstance(query, ByWorkflow):
        return str(protocol_ids.InvocationId.for_workflow_run(query.workflow, query.key))
    return str(
        protocol_ids.InvocationId.for_idempotent_request(
            query.service, query.handler, query.idempotency_key, query.key
        )
    )


def _query_from_body(body: bytes) -> InvocationQuery:
    def bad(reason: str) -> IngressError:
        return IngressError(400, f"bad request body: {reason}")

    try:
        obj = json.loads(body or b"null")
    except ValueError as e:
        raise bad(str(e)) from None
    except RecursionError:  # deep nesting exhausts the decoder's stack; not a JSON syntax error
        raise bad("JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise bad("expected a JSON object with a 'target' field")

    def field(name: str) -> str:
        v = obj.get(name)
        if not isinstance(v, str):
            raise bad(f"missing field `{name}`")
        return v

    target = obj.get("target")
    if target == "invocation":
        return ById(field("invocationId"))
    if target == "workflow":
        return ByWorkflow(workflow=field("workflowName"), key=field("workflowKey"))
    if target == "idempotentInvocation":
        key = obj.get("key")
        return ByIdempotencyKey(
            service=field("service"),
            handler=field("handler"),
            idempotency_key=field("idempotencyKey"),
            key=key if isinstance(key, str) else None,
        )
    raise bad(f"unknown target {target!r}")


def _ingress_error(e: IngressError) -> tuple[int, Headers, bytes]:
    body = _json({"code": e.status, "message": e.message, "source": "ingress"})
    return e.status, [("x-restate-error-source", "ingress"), ("content-type", JSON)], body


def _result_response(result: InvocationResult, handler: HandlerSchema | None) -> tuple[int, Headers, bytes]:
    out: Headers = [("x-restate-id", result.invocation_id)]
    if result.expires_at_ms is not None:
        out.append(("idempotency-expires", rfc3339_millis(result.expires_at_ms)))
    outcome = result.outcome
    if isinstance(outcome, Success):
        if handler is not None:
            content_type = output_content_type(handler, outcome.value)
        else:
            content_type = outcome.content_type if outcome.value else None
        if content_type is not None:
            out.append(("content-type", content_type))
        return 200, out, outcome.value
    payload: dict[str, Any] = {"code": outcome.code, "message": outcome.message}
    if outcome.metadata:
        payload["metadata"] = dict(outcome.metadata)
    payload["source"] = "invocation"
    out.append(("x-restate-error-source", "invocation"))
    out.append(("content-type", JSON))
    return errors.failure_status(outcome.code), out, _json(payload)


def service_names(services: list[ServiceSchema]) -> list[str]:
    return [s.name for s in services]
