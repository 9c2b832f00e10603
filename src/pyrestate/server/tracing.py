"""OpenTelemetry traces of invocations, shaped as restate-server emits them, exported over OTLP.

Per invocation (all spans INTERNAL, resource `service.name=Restate`, scope `services`):

    ingress {target}             the ingress request; its parent is the request's W3C `traceparent`
    └─ invocation-start {target} the invocation's own span (a call's: under the caller's attempt; a send's:
       │                         the root of a new trace, linked to the sender's attempt)
       ├─ invocation-attempt {target}   one per attempt, `traceparent` of the request to the deployment,
       │                                an event per journal command; status OK or ERROR
       └─ invocation-end {target}       on completion: `restate.invocation.result` success | failure

The invocation's span context is stored with it (`InvocationStatus.trace`, and `InvocationRequest.trace`
through the outbox) as one short string, so that attempts after a restart and the invocations it calls join
the same trace:

    "<trace id, 32 hex>-<span id, 16 hex>-<flags, 2 hex>" + cause

with cause "" (a root), "/<parent span id>" (a child in the same trace) or "~<trace id>-<span id>" (linked
from another trace). The partition state machine derives a callee's context from its caller's without
randomness: span ids are hashes of invocation ids (and of the attempt epoch for attempt spans), so `apply`
stays pure and the caller's attempt span id is known without storing it.

With no `--tracing-endpoint` (the default) nothing here runs: `sink` is None, no context is made at the
ingress, no record carries one, and no `traceparent` is sent to deployments. OpenTelemetry is imported only
when tracing is on; spans are handed, finished, to a BatchSpanProcessor whose thread exports them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import xxhash

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

    from pyrestate.server.core_api import Outcome
    from pyrestate.server.storage.records import InvocationStatus, Target

# Restate's names: dashboards built for restate-server find pyrestate's spans under the same service.
SERVICE_NAME = "Restate"
SCOPE_NAME = "services"
OTLP_HTTP_SCHEMES = ("otlp+http://", "otlp+https://")
OTLP_GRPC_SCHEMES = ("http://", "https://")

Attributes = dict[str, str | int]


class TracingConfigError(ValueError):
    pass


def check_endpoint(value: str) -> str:
    """`otlp+http(s)://host:port/path` (OTLP over HTTP) or `http(s)://host:port` (OTLP over gRPC), as in
    Restate's `tracing-endpoint`."""
    v = value.strip()
    if v.startswith(OTLP_HTTP_SCHEMES):
        return v
    if v.startswith(OTLP_GRPC_SCHEMES):
        try:
            import opentelemetry.exporter.otlp.proto.grpc.trace_exporter  # noqa: F401
        except ImportError:
            raise TracingConfigError(
                f"{v!r} asks for OTLP over gRPC, whose exporter is not installed: install "
                "opentelemetry-exporter-otlp-proto-grpc, or use OTLP over HTTP (otlp+http://host:4318/v1/traces)"
            ) from None
        return v
    raise TracingConfigError(
        f"expected otlp+http(s)://host:port/v1/traces (OTLP over HTTP) or http(s)://host:port (OTLP over "
        f"gRPC), got {value!r}"
    )


# ------------------------------------------------------------------------------------------ span contexts
# Pure functions of their arguments (the state machine calls them while applying a command).


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """(trace id, parent span id, flags) of a W3C `traceparent` header, None when absent or malformed."""
    if value is None:
        return None
    parts = value.strip().lower().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    version, trace_id, span_id, flags = parts[:4]
    if version == "00" and len(parts) != 4:
        return None
    if len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
        return None
    try:
        if int(trace_id, 16) == 0 or int(span_id, 16) == 0:
            return None
        int(flags, 16)
    except ValueError:
        return None
    return trace_id, span_id, flags


def _hash64(text: str) -> str:
    return f"{xxhash.xxh64_intdigest(text.encode()) or 1:016x}"


def invocation_span_id(invocation_id: str) -> str:
    return _hash64(f"{invocation_id}/invocation")


def attempt_span_id(invocation_id: str, epoch: int) -> str:
    return _hash64(f"{invocation_id}/attempt/{epoch}")


def callee_trace(caller: str, caller_id: str, epoch: int, callee_id: str, one_way: bool) -> str:
    """The context of an invocation made by `caller_id`'s attempt `epoch` (caller context `caller`).

    A call is a child of the calling attempt in the caller's trace; a send starts its own trace (its id
    derived from the callee's invocation id, the span id its low half, as Restate does) linked to it.
    """
    trace_id, flags = caller[:32], caller[50:52]
    parent = attempt_span_id(caller_id, epoch)
    if one_way:
        new_trace = f"{xxhash.xxh128_intdigest(callee_id.encode()) or 1:032x}"
        return f"{new_trace}-{new_trace[16:]}-{flags}~{trace_id}-{parent}"
    return f"{trace_id}-{invocation_span_id(callee_id)}-{flags}/{parent}"


def attempt_traceparent(trace: str, invocation_id: str, epoch: int) -> str:
    """The `traceparent` sent to the deployment with attempt `epoch`: the attempt span's context."""
    return f"00-{trace[:32]}-{attempt_span_id(invocation_id, epoch)}-{trace[50:52]}"


@dataclass(frozen=True, slots=True)
class IngressContext:
    trace: str  # stored with the invocation
    span_id: str  # the ingress span's
    parent_id: str | None  # the inbound traceparent's span


def ingress_context(inbound_traceparent: str | None) -> IngressContext:
    """A new invocation's context at the ingress: under the inbound `traceparent` if any, else a new trace."""
    parsed = parse_traceparent(inbound_traceparent)
    if parsed is None:
        trace_id, parent_id, flags = f"{random.getrandbits(128) or 1:032x}", None, "01"
    else:
        trace_id, parent_id, flags = parsed
    ingress_span = f"{random.getrandbits(64) or 1:016x}"
    invocation_span = f"{random.getrandbits(64) or 1:016x}"
    return IngressContext(f"{trace_id}-{invocation_span}-{flags}/{ingress_span}", ingress_span, parent_id)


def _sampled(trace: str) -> bool:
    return int(trace[50:52], 16) & 1 == 1


# ------------------------------------------------------------------------------------------ span export


def _target_attributes(invocation_id: str, target: Target) -> Attributes:
    return {
        "rpc.service": target.service,
        "rpc.method": target.handler,
        "restate.invocation.id": invocation_id,
        "restate.invocation.target": target.display(),
    }


# The codes restate-server names in `restate.invocation.error.code` ("409 Aborted"); others are the number.
_ERROR_CODE_NAMES = {
    400: "Bad request",
    404: "Not found",
    409: "Aborted",
    410: "Gone",
    415: "Unsupported media type",
    470: "Not ready",
    500: "Internal",
    571: "Protocol violation",
}


def error_code_text(code: int) -> str:
    name = _ERROR_CODE_NAMES.get(code)
    return str(code) if name is None else f"{code} {name}"


def command_type_name(ty_name: str) -> str:
    """`ONE_WAY_CALL` -> `Command/OneWayCall`, Restate's `restate.journal.command.type`."""
    return "Command/" + "".join(part.capitalize() for part in ty_name.split("_"))


@dataclass(slots=True)
class AttemptSpan:
    """An attempt in progress: its span is exported when `end` is called."""

    sink: SpanSink
    status: InvocationStatus
    epoch: int
    start_ns: int
    attributes: Attributes = field(default_factory=dict)
    events: list[tuple[str, int, Attributes]] = field(default_factory=list)
    error: str | None = None
    ok: bool = False

    @property
    def traceparent(self) -> str:
        assert self.status.trace is not None
        return attempt_traceparent(self.status.trace, self.status.invocation_id, self.epoch)

    def deployment(self, deployment_id: str, address: str, protocol_version: int) -> None:
        self.attributes["restate.deployment.id"] = deployment_id
        self.attributes["restate.deployment.address"] = address
        self.attributes["restate.deployment.service_protocol_version"] = protocol_version

    def command(self, ty_name: str) -> None:
        self.events.append(
            (
                "restate.invocation.lifecycle.new_command",
                time.time_ns(),
                {"restate.journal.command.type": command_type_name(ty_name)},
            )
        )

    def suspended(self) -> None:
        self.events.append(("restate.invocation.lifecycle.suspended", time.time_ns(), {}))
        self.ok = True

    def ended(self) -> None:
        self.ok = True

    def failed(self, code: int, message: str) -> None:
        self.error = f"[{code}] {message}"

    def end(self) -> None:
        st, trace = self.status, self.status.trace
        assert trace is not None
        attrs: Attributes = {"rpc.system": "restate", **_target_attributes(st.invocation_id, st.target)}
        attrs.update(self.attributes)
        self.sink.emit(
            f"invocation-attempt {st.target.display()}",
            trace,
            attempt_span_id(st.invocation_id, self.epoch),
            trace[33:49],
            attrs,
            self.start_ns,
            time.time_ns(),
            ok=self.ok and self.error is None,
            error=self.error if self.error is not None else (None if self.ok else "attempt aborted"),
            events=self.events,
        )


class SpanSink:
    """Builds finished spans and hands them to a span processor (BatchSpanProcessor when serving)."""

    def __init__(self, processor: SpanProcessor, instance: str = "", version: str = "") -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self.processor = processor
        self._resource = Resource.create(
            {
                "service.name": SERVICE_NAME,
                "service.namespace": SERVICE_NAME,
                "service.version": version,
                "service.instance.id": instance,
            }
        )
        self._scope = InstrumentationScope(SCOPE_NAME)

    def emit(
        self,
        name: str,
        trace: str,
        span_id: str,
        parent_id: str | None,
        attributes: Mapping[str, str | int],
        start_ns: int,
        end_ns: int,
        *,
        ok: bool | None = None,  # None: status left unset
        error: str | None = None,
        events: Sequence[tuple[str, int, Attributes]] = (),
        link: tuple[str, str] | None = None,
    ) -> None:
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import Link, SpanContext, Status, StatusCode, TraceFlags

        if not _sampled(trace):
            return
        trace_id = int(trace[:32], 16)
        flags = TraceFlags(int(trace[50:52], 16))
        status = Status(StatusCode.UNSET)
        if error is not None:
            status = Status(StatusCode.ERROR, error)
        elif ok:
            status = Status(StatusCode.OK)
        span = ReadableSpan(
            name,
            context=SpanContext(trace_id, int(span_id, 16), False, flags),
            parent=None if parent_id is None else SpanContext(trace_id, int(parent_id, 16), True, flags),
            resource=self._resource,
            attributes=dict(attributes),
            events=[Event(n, dict(a), ts) for n, ts, a in events],
            links=()
            if link is None
            else [Link(SpanContext(int(link[0], 16), int(link[1], 16), True, flags))],
            instrumentation_scope=self._scope,
            status=status,
            start_time=start_ns,
            end_time=end_ns,
        )
        self.processor.on_end(span)

    # ------------------------------------------------------------------ the spans

    def ingress(
        self,
        ctx: IngressContext,
        invocation_id: str,
        service: str,
        handler: str,
        key: str | None,
        client: tuple[str, int] | None,
        start_ns: int,
    ) -> None:
        """The span of the ingress request that submitted `invocation_id` (an instant, as Restate's)."""
        target = f"{service}/{handler}" if key is None else f"{service}/{key}/{handler}"
        attrs: Attributes = {
            "rpc.service": service,
            "rpc.method": handler,
            "restate.invocation.id": invocation_id,
            "restate.invocation.target": target,
        }
        if client is not None:
            attrs["client.socket.address"] = str(client[0])
            attrs["client.socket.port"] = int(client[1])
        self.emit(f"ingress {target}", ctx.trace, ctx.span_id, ctx.parent_id, attrs, start_ns, start_ns)

    def invocation_start(self, st: InvocationStatus) -> None:
        trace = st.trace
        assert trace is not None
        cause = trace[52:]
        parent = cause[1:] if cause.startswith("/") else None
        link = (cause[1:33], cause[34:50]) if cause.startswith("~") else None
        now = time.time_ns()
        start = min(now, (st.running_at or st.created_at) * 1_000_000)
        self.emit(
            f"invocation-start {st.target.display()}",
            trace,
            trace[33:49],
            parent,
            _target_attributes(st.invocation_id, st.target),
            start,
            now,
            link=link,
        )

    def attempt(self, st: InvocationStatus, epoch: int) -> AttemptSpan:
        return AttemptSpan(self, st, epoch, time.time_ns())

    def invocation_end(self, st: InvocationStatus, outcome: Outcome) -> None:
        from pyrestate.server.core_api import Failure

        trace = st.trace
        assert trace is not None
        attrs = _target_attributes(st.invocation_id, st.target)
        error = None
        if isinstance(outcome, Failure):
            attrs["restate.invocation.result"] = "failure"
            attrs["restate.invocation.error.code"] = error_code_text(outcome.code)
            attrs["error.message"] = outcome.message
            error = outcome.message
        else:
            attrs["restate.invocation.result"] = "success"
        now = time.time_ns()
        span_id = _hash64(f"{st.invocation_id}/end")
        self.emit(
            f"invocation-end {st.target.display()}", trace, span_id, trace[33:49], attrs, now, now,
            ok=True, error=error,
        )


# The process's sink while tracing is on (`start`), else None: every hook checks this first.
sink: SpanSink | None = None


def start(endpoint: str | None, *, instance: str = "", version: str = "") -> SpanSink | None:
    """Export spans to `endpoint` (see `check_endpoint`) from now on; None (tracing off) does nothing."""
    global sink
    if endpoint is None:
        return None
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    exporter: SpanExporter
    if endpoint.startswith(OTLP_HTTP_SCHEMES):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint.removeprefix("otlp+"))
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        exporter = GrpcExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    sink = SpanSink(BatchSpanProcessor(exporter, schedule_delay_millis=1000), instance, version)
    return sink


def stop(timeout_s: float = 5.0) -> None:
    """Export what is still queued (at most `timeout_s`) and stop; blocking, call it off the event loop."""
    global sink
    current, sink = sink, None
    if current is not None:
        current.processor.force_flush(int(timeout_s * 1000))
        current.processor.shutdown()
