"""JSON shapes of the admin API (services, handlers, deployments), as Restate 1.7 renders them. Pure code.

Service-level timeouts, retentions and the retry policy fall back to the server defaults; handler-level
values are shown only when the handler overrides them (its `retry_policy` always has `max_attempts`).
"""

from __future__ import annotations

from typing import Any

from pyrestate.server.config import ServerConfig
from pyrestate.server.core_api import DeploymentRecord, HandlerSchema, ServiceSchema, ServiceType
from pyrestate.server.deployments import redact_headers, redact_uri
from pyrestate.server.durations import format_friendly_ms, rfc3339_nanos
from pyrestate.server.validation import input_description, output_description

_ON_MAX = {"PAUSE": "Pause", "KILL": "Kill"}


def _on_max(value: str) -> str:
    return _ON_MAX.get(value.upper(), value.capitalize())


def handler_json(h: HandlerSchema) -> dict[str, Any]:
    out: dict[str, Any] = {"name": h.name}
    if h.ty is not None:
        out["ty"] = h.ty.admin_name
    if h.documentation is not None:
        out["documentation"] = h.documentation
    if h.metadata:
        out["metadata"] = dict(h.metadata)
    for key, ms in (
        ("idempotency_retention", h.idempotency_retention_ms),
        ("workflow_completion_retention", h.workflow_completion_retention_ms),
        ("journal_retention", h.journal_retention_ms),
        ("inactivity_timeout", h.inactivity_timeout_ms),
        ("abort_timeout", h.abort_timeout_ms),
    ):
        if ms is not None:
            out[key] = format_friendly_ms(ms)
    if h.enable_lazy_state is not None:
        out["enable_lazy_state"] = h.enable_lazy_state
    out["public"] = h.public
    out["input_description"] = input_description(h)
    out["output_description"] = output_description(h)
    if h.input_content_type is not None and h.input_json_schema is not None:
        out["input_json_schema"] = h.input_json_schema
    if h.output_json_schema is not None:
        out["output_json_schema"] = h.output_json_schema
    retry: dict[str, Any] = {}
    if h.retry_initial_interval_ms is not None:
        retry["initial_interval"] = format_friendly_ms(h.retry_initial_interval_ms)
    if h.retry_exponentiation_factor is not None:
        retry["exponentiation_factor"] = float(h.retry_exponentiation_factor)
    retry["max_attempts"] = h.retry_max_attempts
    if h.retry_max_interval_ms is not None:
        retry["max_interval"] = format_friendly_ms(h.retry_max_interval_ms)
    if h.retry_on_max_attempts is not None:
        retry["on_max_attempts"] = _on_max(h.retry_on_max_attempts)
    out["retry_policy"] = retry
    return out


def service_json(
    s: ServiceSchema, config: ServerConfig, deployment: DeploymentRecord | None = None
) -> dict[str, Any]:
    def pick(value: int | None, default: int) -> str:
        return format_friendly_ms(default if value is None else value)

    # A request/response deployment cannot keep a stream open, so Restate shows no inactivity timeout.
    inactivity_default = config.inactivity_timeout_ms
    if deployment is not None and deployment.protocol_mode == "REQUEST_RESPONSE":
        inactivity_default = 0

    out: dict[str, Any] = {
        "name": s.name,
        "ty": s.ty.admin_name,
        "handlers": [handler_json(h) for h in s.handlers.values()],
    }
    if s.documentation is not None:
        out["documentation"] = s.documentation
    if s.metadata:
        out["metadata"] = dict(s.metadata)
    out["deployment_id"] = s.deployment_id
    out["revision"] = s.revision
    out["public"] = s.public
    out["idempotency_retention"] = pick(s.idempotency_retention_ms, config.idempotency_retention_ms)
    if s.ty is ServiceType.WORKFLOW:
        out["workflow_completion_retention"] = pick(
            s.workflow_completion_retention_ms, config.workflow_completion_retention_ms
        )
    out["journal_retention"] = pick(s.journal_retention_ms, config.journal_retention_ms)
    out["inactivity_timeout"] = pick(s.inactivity_timeout_ms, inactivity_default)
    out["abort_timeout"] = pick(s.abort_timeout_ms, config.abort_timeout_ms)
    out["enable_lazy_state"] = (
        s.enable_lazy_state if s.enable_lazy_state is not None else config.disable_eager_state
    )
    out["retry_policy"] = {
        "initial_interval": pick(s.retry_initial_interval_ms, config.retry_initial_interval_ms),
        "exponentiation_factor": float(
            s.retry_exponentiation_factor
            if s.retry_exponentiation_factor is not None
            else config.retry_exponentiation_factor
        ),
        "max_attempts": s.retry_max_attempts
        if s.retry_max_attempts is not None
        else config.retry_max_attempts,
        "max_interval": pick(s.retry_max_interval_ms, config.retry_max_interval_ms),
        "on_max_attempts": _on_max(s.retry_on_max_attempts or config.retry_on_max_attempts),
    }
    return out


def _deployment_head(d: DeploymentRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "uri": redact_uri(d.uri),
        "protocol_type": "RequestResponse" if d.protocol_mode == "REQUEST_RESPONSE" else "BidiStream",
        "http_version": "HTTP/1.1" if d.use_http_11 else "HTTP/2.0",
    }
    if d.additional_headers:
        out["additional_headers"] = redact_headers(d.additional_headers)
    out["created_at"] = rfc3339_nanos(d.created_at_ms)
    out["min_protocol_version"] = d.min_protocol_version
    out["max_protocol_version"] = d.max_protocol_version
    if d.sdk_version is not None:
        out["sdk_version"] = d.sdk_version
    return out


def deployment_list_entry(d: DeploymentRecord) -> dict[str, Any]:
    out = _deployment_head(d)
    out["services"] = [{"name": s.name, "revision": s.revision} for s in d.services]
    return out


def deployment_detail(d: DeploymentRecord, config: ServerConfig) -> dict[str, Any]:
    out = _deployment_head(d)
    out["services"] = [service_json(s, config, d) for s in d.services]
    return out


def registration_json(d: DeploymentRecord, config: ServerConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "services": [service_json(s, config, d) for s in d.services],
        "min_protocol_version": d.min_protocol_version,
        "max_protocol_version": d.max_protocol_version,
    }
    if d.sdk_version is not None:
        out["sdk_version"] = d.sdk_version
    return out
