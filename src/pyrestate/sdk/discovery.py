"""The endpoint manifest (discovery JSON), shaped like the official Python SDK's."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Literal

from pyrestate.sdk._vm.machine import MAX_VERSION, MIN_VERSION
from pyrestate.sdk.service import (
    AnyService,
    Handler,
    InvocationRetryPolicy,
    VirtualObject,
    Workflow,
    json_schema_from_type_hint,
)

MANIFEST_CONTENT_TYPE = "application/vnd.restate.endpointmanifest.v{}+json"
SUPPORTED_MANIFEST_VERSIONS = (4, 3, 2, 1)

_SERVICE_TYPES = {"service": "SERVICE", "object": "VIRTUAL_OBJECT", "workflow": "WORKFLOW"}
_HANDLER_TYPES = {"exclusive": "EXCLUSIVE", "shared": "SHARED", "workflow": "WORKFLOW"}


def negotiate_manifest_version(accept: str | None) -> int | None:
    """Highest manifest version named in Accept; no Accept means v2 like the official SDK; None = 415."""
    if not accept:
        return 2
    for v in SUPPORTED_MANIFEST_VERSIONS:
        if MANIFEST_CONTENT_TYPE.format(v) in accept:
            return v
    return None


def _ms(d: timedelta | None) -> int | None:
    return None if d is None else int(d.total_seconds() * 1000)


def _retry(p: InvocationRetryPolicy | None) -> dict[str, Any]:
    if p is None:
        return {}
    return {
        "retryPolicyInitialInterval": _ms(p.initial_interval) if p.initial_interval else None,
        "retryPolicyMaxInterval": _ms(p.max_interval) if p.max_interval else None,
        "retryPolicyMaxAttempts": int(p.max_attempts) if p.max_attempts is not None else None,
        "retryPolicyExponentiationFactor": float(p.exponentiation_factor)
        if p.exponentiation_factor is not None
        else None,
        "retryPolicyOnMaxAttempts": p.on_max_attempts.upper() if p.on_max_attempts is not None else None,
    }


def _lazy(state_preload: bool | list[str] | None, enable_lazy_state: bool | None) -> bool | None:
    if state_preload is None:
        return enable_lazy_state
    if isinstance(state_preload, bool):
        return not state_preload
    return True


def _handler_json(h: Handler[Any, Any]) -> dict[str, Any]:
    io = h.handler_io
    inp: dict[str, Any]
    if io.input_type is not None and io.input_type.is_void:
        inp = {}
    else:
        inp = {
            "required": False,
            "contentType": io.accept,
            "jsonSchema": json_schema_from_type_hint(io.input_type),
        }
    if io.output_type is not None and io.output_type.is_void:
        out: dict[str, Any] = {"setContentTypeIfEmpty": False}
    else:
        out = {
            "contentType": io.content_type,
            "setContentTypeIfEmpty": False,
            "jsonSchema": json_schema_from_type_hint(io.output_type),
        }
    d: dict[str, Any] = {
        "name": h.name,
        "ty": _HANDLER_TYPES[h.kind] if h.kind else None,
        "input": {k: v for k, v in inp.items() if v is not None},
        "output": {k: v for k, v in out.items() if v is not None},
        "documentation": h.description,
        "metadata": h.metadata,
        "inactivityTimeout": _ms(h.inactivity_timeout),
        "abortTimeout": _ms(h.abort_timeout),
        "journalRetention": _ms(h.journal_retention),
        "idempotencyRetention": _ms(h.idempotency_retention),
        "workflowCompletionRetention": _ms(h.workflow_retention),
        "enableLazyState": _lazy(h.state_preload, h.enable_lazy_state),
        "ingressPrivate": h.ingress_private,
        **_retry(h.invocation_retry_policy),
    }
    return d


def _service_json(s: AnyService) -> dict[str, Any]:
    keyed = isinstance(s, VirtualObject | Workflow)
    return {
        "name": s.name,
        "ty": _SERVICE_TYPES[s.service_tag.kind],
        "handlers": [_handler_json(h) for h in s.handlers.values()],
        "documentation": s.service_tag.description,
        "metadata": s.service_tag.metadata,
        "inactivityTimeout": _ms(s.inactivity_timeout),
        "abortTimeout": _ms(s.abort_timeout),
        "journalRetention": _ms(s.journal_retention),
        "idempotencyRetention": _ms(s.idempotency_retention),
        "enableLazyState": _lazy(s.state_preload, s.enable_lazy_state) if keyed else None,
        "ingressPrivate": s.ingress_private,
        **_retry(s.invocation_retry_policy),
    }


_V4_ONLY = (
    "retryPolicyInitialInterval",
    "retryPolicyMaxInterval",
    "retryPolicyMaxAttempts",
    "retryPolicyExponentiationFactor",
    "retryPolicyOnMaxAttempts",
)
_V3_ONLY = (
    "inactivityTimeout",
    "abortTimeout",
    "idempotencyRetention",
    "journalRetention",
    "enableLazyState",
    "ingressPrivate",
    "workflowCompletionRetention",
)
_V2_ONLY = ("documentation", "metadata")


def _strip_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_strip_none(x) for x in obj]
    return obj


def compute_manifest(
    services: Iterable[AnyService], version: int, protocol_mode: Literal["BIDI_STREAM", "REQUEST_RESPONSE"]
) -> dict[str, Any]:
    """The manifest dict; raises ValueError if an option cannot be expressed in `version`."""
    svcs = [_strip_none(_service_json(s)) for s in services]
    for s in svcs:
        for obj in [s, *s["handlers"]]:
            for keys, needed in ((_V4_ONLY, 4), (_V3_ONLY, 3), (_V2_ONLY, 2)):
                if version < needed:
                    for k in keys:
                        if k in obj:
                            if needed == 2:
                                del obj[k]  # documentation is advisory: drop it for v1 callers
                            else:
                                raise ValueError(
                                    f"{k} is only supported in discovery protocol version {needed}"
                                )
    return {
        "protocolMode": protocol_mode,
        "minProtocolVersion": MIN_VERSION,
        "maxProtocolVersion": MAX_VERSION,
        "services": svcs,
    }


def compute_manifest_json(
    services: Iterable[AnyService], version: int, protocol_mode: Literal["BIDI_STREAM", "REQUEST_RESPONSE"]
) -> bytes:
    return json.dumps(compute_manifest(services, version, protocol_mode), allow_nan=False).encode()
