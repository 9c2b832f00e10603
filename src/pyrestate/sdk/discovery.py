"""The endpoint manifest (answer to `GET /discover`) of a set of SDK services, built on the shared model
in `pyrestate.protocol.manifest`; its fields mirror what the official Python SDK declares."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Literal

from pyrestate.protocol import manifest as m
from pyrestate.sdk._vm.results import MAX_VERSION, MIN_VERSION
from pyrestate.sdk.service import (
    AnyService,
    Handler,
    InvocationRetryPolicy,
    VirtualObject,
    Workflow,
    json_schema_from_type_hint,
)

_SERVICE_TYPES = {
    "service": m.ServiceType.SERVICE,
    "object": m.ServiceType.VIRTUAL_OBJECT,
    "workflow": m.ServiceType.WORKFLOW,
}
_HANDLER_TYPES = {
    "exclusive": m.HandlerType.EXCLUSIVE,
    "shared": m.HandlerType.SHARED,
    "workflow": m.HandlerType.WORKFLOW,
}

ProtocolModeName = Literal["BIDI_STREAM", "REQUEST_RESPONSE"]


def _ms(d: timedelta | None) -> int | None:
    return None if d is None else int(d.total_seconds() * 1000)


def _retry(p: InvocationRetryPolicy | None) -> dict[str, Any]:
    if p is None:
        return {}
    return {
        "retry_policy_initial_interval": _ms(p.initial_interval) if p.initial_interval else None,
        "retry_policy_max_interval": _ms(p.max_interval) if p.max_interval else None,
        "retry_policy_max_attempts": int(p.max_attempts) if p.max_attempts is not None else None,
        "retry_policy_exponentiation_factor": float(p.exponentiation_factor)
        if p.exponentiation_factor is not None
        else None,
        "retry_policy_on_max_attempts": p.on_max_attempts.upper() if p.on_max_attempts is not None else None,
    }


def _lazy(state_preload: bool | list[str] | None, enable_lazy_state: bool | None) -> bool | None:
    if state_preload is None:
        return enable_lazy_state
    if isinstance(state_preload, bool):
        return not state_preload
    return True


def _handler(h: Handler[Any, Any]) -> m.Handler:
    io = h.handler_io
    if io.input_type is not None and io.input_type.is_void:
        inp = m.InputPayload()
    else:
        inp = m.InputPayload(
            content_type=io.accept, required=False, json_schema=json_schema_from_type_hint(io.input_type)
        )
    if io.output_type is not None and io.output_type.is_void:
        out = m.OutputPayload(set_content_type_if_empty=False)
    else:
        out = m.OutputPayload(
            content_type=io.content_type,
            set_content_type_if_empty=False,
            json_schema=json_schema_from_type_hint(io.output_type),
        )
    return m.Handler(
        name=h.name,
        ty=_HANDLER_TYPES[h.kind] if h.kind else None,
        input=inp,
        output=out,
        documentation=h.description,
        metadata=h.metadata,
        inactivity_timeout=_ms(h.inactivity_timeout),
        abort_timeout=_ms(h.abort_timeout),
        journal_retention=_ms(h.journal_retention),
        idempotency_retention=_ms(h.idempotency_retention),
        workflow_completion_retention=_ms(h.workflow_retention),
        enable_lazy_state=_lazy(h.state_preload, h.enable_lazy_state),
        ingress_private=h.ingress_private,
        **_retry(h.invocation_retry_policy),
    )


def _service(s: AnyService) -> m.Service:
    keyed = isinstance(s, VirtualObject | Workflow)
    return m.Service(
        name=s.name,
        ty=_SERVICE_TYPES[s.service_tag.kind],
        handlers=tuple(_handler(h) for h in s.handlers.values()),
        documentation=s.service_tag.description,
        metadata=s.service_tag.metadata,
        inactivity_timeout=_ms(s.inactivity_timeout),
        abort_timeout=_ms(s.abort_timeout),
        journal_retention=_ms(s.journal_retention),
        idempotency_retention=_ms(s.idempotency_retention),
        enable_lazy_state=_lazy(s.state_preload, s.enable_lazy_state) if keyed else None,
        ingress_private=s.ingress_private,
        **_retry(s.invocation_retry_policy),
    )


def endpoint_manifest(services: Iterable[AnyService], protocol_mode: ProtocolModeName) -> m.EndpointManifest:
    return m.EndpointManifest(
        protocol_mode=m.ProtocolMode(protocol_mode),
        min_protocol_version=MIN_VERSION,
        max_protocol_version=MAX_VERSION,
        services=tuple(_service(s) for s in services),
    )


def compute_manifest(
    services: Iterable[AnyService], version: int, protocol_mode: ProtocolModeName
) -> dict[str, Any]:
    """The manifest as discovery `version` JSON; ManifestError (a ValueError) if an option cannot be
    expressed in that version."""
    return endpoint_manifest(services, protocol_mode).to_json(version)


def compute_manifest_json(
    services: Iterable[AnyService], version: int, protocol_mode: ProtocolModeName
) -> bytes:
    return endpoint_manifest(services, protocol_mode).dumps(version).encode()
