"""Ingress routes: from a raw request path (and the type of the named service) to what to do.

Pure code: the only outside knowledge is `service_type`, a lookup of a service's type by name, because
whether a key segment follows the service name depends on it. Errors are IngressErrors carrying
Restate's status and message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, unquote_to_bytes

from pyrestate.server.core_api import (
    ById,
    ByIdempotencyKey,
    ByWorkflow,
    InvocationQuery,
    ServiceType,
)
from pyrestate.server.durations import DurationError, parse_duration_ms
from pyrestate.server.ingress import errors

ServiceTypeLookup = Callable[[str], ServiceType | None]


@dataclass(frozen=True, slots=True)
class HealthRoute:
    pass


@dataclass(frozen=True, slots=True)
class ServiceRoute:
    service: str
    handler: str
    key: str | None  # None for plain services; "" is a valid key
    send: bool


@dataclass(frozen=True, slots=True)
class LookupRoute:
    """attach / output of an existing invocation; the id in `query` is not validated yet."""

    op: Literal["attach", "output"]
    query: InvocationQuery


@dataclass(frozen=True, slots=True)
class TargetInBodyRoute:
    """`POST /restate/attach|output|lookup`: the target is described by the JSON body."""

    op: Literal["attach", "output", "lookup"]


@dataclass(frozen=True, slots=True)
class AwakeableRoute:
    op: Literal["resolve", "reject"]
    awakeable_id: str


Route = HealthRoute | ServiceRoute | LookupRoute | TargetInBodyRoute | AwakeableRoute


def _decode_key(segment: str) -> str:
    try:
        return unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        raise errors.bad_key_encoding(segment) from None


def _is_keyed(service: str, service_type: ServiceTypeLookup) -> bool:
    ty = service_type(service)
    if ty is None:
        raise errors.service_not_found(service)
    return ty is not ServiceType.SERVICE


def parse_path(path: str, service_type: ServiceTypeLookup) -> Route:
    """Route of a raw (still percent-encoded) request path such as ``/Counter/my%20key/add/send``."""
    # Between 2 (`/service/handler`) and 7 (`/restate/scope/s/call/service/key/handler`) segments.
    if not 2 <= path.count("/") <= 7 or not path.startswith("/"):
        raise errors.bad_path(path)
    segments = path.split("/")[1:]
    first = segments[0]
    if first == "restate":
        return _parse_restate(segments[1:], service_type)
    if first == "openapi":
        raise errors.not_found()
    return _parse_service(first, segments[1:], service_type, errors.bad_service_path, allow_send_suffix=True)


def _parse_service(
    service: str,
    rest: list[str],
    service_type: ServiceTypeLookup,
    bad: Callable[[], errors.IngressError],
    *,
    allow_send_suffix: bool,
    send: bool = False,
) -> ServiceRoute:
    it = iter(rest)
    key: str | None = None
    if _is_keyed(service, service_type):
        segment = next(it, None)
        if segment is None:
            raise bad()
        key = _decode_key(segment)
    handler = next(it, None)
    if handler is None:
        raise bad()
    last = next(it, None)
    if last is not None:
        if not allow_send_suffix or last != "send":
            raise bad()
        send = True
    if next(it, None) is not None:
        raise bad()
    return ServiceRoute(service=service, handler=handler, key=key, send=send)


def _parse_restate(rest: list[str], service_type: ServiceTypeLookup) -> Route:
    if not rest:
        raise errors.not_found()
    verb, args = rest[0], rest[1:]
    if verb == "health":
        return HealthRoute()
    if verb in ("awakeables", "a"):
        if len(args) < 2:
            raise errors.bad_awakeables_path()
        if args[1] not in ("resolve", "reject") or len(args) > 2:
            raise errors.not_found()
        return AwakeableRoute(op="resolve" if args[1] == "resolve" else "reject", awakeable_id=args[0])
    if verb == "invocation":
        return _parse_invocation(args, service_type)
    if verb == "workflow":
        if len(args) < 3:
            raise errors.bad_workflow_path()
        name, key, op = args[0], _decode_key(args[1]), args[2]
        if op not in ("attach", "output") or len(args) > 3:
            raise errors.not_found()
        return LookupRoute(
            op="attach" if op == "attach" else "output", query=ByWorkflow(workflow=name, key=key)
        )
    if verb in ("call", "send"):
        if not args:
            raise errors.bad_restate_api_path()
        return _parse_service(
            args[0],
            args[1:],
            service_type,
            errors.bad_restate_api_path,
            allow_send_suffix=False,
            send=verb == "send",
        )
    if verb in ("attach", "output"):
        if not args:
            return TargetInBodyRoute(op="attach" if verb == "attach" else "output")
        if len(args) > 1:
            raise errors.bad_restate_api_path()
        return LookupRoute(op="attach" if verb == "attach" else "output", query=ById(args[0]))
    if verb == "lookup":
        if args:
            raise errors.bad_restate_api_path()
        return TargetInBodyRoute(op="lookup")
    if verb == "scope":
        raise errors.IngressError(400, "scoped invocations are not supported by this server")
    raise errors.not_found()


def _parse_invocation(args: list[str], service_type: ServiceTypeLookup) -> LookupRoute:
    if len(args) < 2:
        raise errors.bad_invocation_path()
    query: InvocationQuery
    if len(args) == 2:
        query, op = ById(args[0]), args[1]
    else:
        service = args[0]
        if _is_keyed(service, service_type):
            if len(args) < 5:
                raise errors.bad_invocation_path()
            key: str | None = _decode_key(args[1])
            handler, ikey, tail = args[2], args[3], args[4:]
        else:
            key, handler, ikey, tail = None, args[1], args[2], args[3:]
        if not tail:
            raise errors.bad_invocation_path()
        op = tail[0]
        if len(tail) > 1:
            raise errors.not_found()
        query = ByIdempotencyKey(service=service, handler=handler, idempotency_key=_decode_key(ikey), key=key)
    if op not in ("attach", "output"):
        raise errors.not_found()
    return LookupRoute(op="attach" if op == "attach" else "output", query=query)


def delay_from_query(query_string: str) -> int | None:
    """Milliseconds of the `delay` query parameter, None when absent; raises the bad-delay error."""
    value: str | None = None
    for name, v in parse_qsl(query_string, keep_blank_values=True):
        if name == "delay":
            value = v
    if value is None:
        return None
    try:
        ms = parse_duration_ms(value)
    except DurationError as e:
        raise errors.bad_delay(str(e)) from None
    if ms < 0:
        raise errors.bad_delay("the duration must not be negative")
    return ms
