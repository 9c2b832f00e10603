"""From a discovered endpoint manifest to the schemas registration stores. Pure code.

The manifest is read by the one manifest model (`pyrestate.protocol.manifest.EndpointManifest`, strict:
names, types, option ranges, no unknown fields); this module adds what only the server checks (the
protocol range it speaks, content-type shapes, one run handler per workflow) and applies the server's
defaults: a missing `input` accepts anything or nothing, `input: {}` accepts nothing, a missing `output` is
JSON, a handler without `ty` is exclusive in objects and the run handler in workflows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyrestate.protocol.manifest import EndpointManifest, Handler, ManifestError, Service
from pyrestate.protocol.versions import MAX_SERVICE_PROTOCOL_VERSION, MIN_SERVICE_PROTOCOL_VERSION
from pyrestate.server.core_api import HandlerSchema, HandlerType, ServiceSchema, ServiceType


class ManifestInvalid(ValueError):
    def __init__(self, message: str, restate_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.restate_code = restate_code


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    protocol_mode: str
    min_protocol_version: int
    max_protocol_version: int
    services: tuple[ServiceSchema, ...]


def _retry_options(o: Handler | Service) -> dict[str, Any]:
    factor = o.retry_policy_exponentiation_factor
    on_max = o.retry_policy_on_max_attempts
    return {
        "retry_initial_interval_ms": o.retry_policy_initial_interval,
        "retry_max_interval_ms": o.retry_policy_max_interval,
        "retry_max_attempts": o.retry_policy_max_attempts,
        "retry_exponentiation_factor": None if factor is None else float(factor),
        "retry_on_max_attempts": None if on_max is None else on_max.value,
    }


def _handler(h: Handler, service: Service) -> HandlerSchema:
    where = f"handler '{service.name}/{h.name}'"
    # input: absent → anything or nothing; {} → nothing; otherwise the declared content type
    input_ct: str | None = "*/*"
    required = False
    in_schema: object | None = None
    if h.input is not None:
        in_schema = h.input.json_schema
        ct = h.input.content_type
        if ct is None and in_schema is not None:
            ct = "application/json"
        input_ct = ct
        required = bool(h.input.required)
        if ct is not None and "/" not in ct:
            raise ManifestInvalid(f"{where}: can't parse the content-type '{ct}': must contain one /")
        if ct is not None and ct.strip().startswith("*/") and ct.strip() != "*/*":
            raise ManifestInvalid(f"{where}: the wildcard format */subType is not supported")

    output_ct: str | None = "application/json"
    set_if_empty = False
    out_schema: object | None = None
    if h.output is not None:
        output_ct = h.output.content_type
        set_if_empty = bool(h.output.set_content_type_if_empty)
        out_schema = h.output.json_schema

    return HandlerSchema(
        name=h.name,
        ty=h.effective_type(service.ty),
        input_required=required,
        input_content_type=input_ct,
        input_json_schema=in_schema,
        output_content_type=output_ct,
        output_set_content_type_if_empty=set_if_empty,
        output_json_schema=out_schema,
        public=not h.ingress_private,
        documentation=h.documentation,
        metadata=dict(h.metadata or {}),
        inactivity_timeout_ms=h.inactivity_timeout,
        abort_timeout_ms=h.abort_timeout,
        journal_retention_ms=h.journal_retention,
        idempotency_retention_ms=h.idempotency_retention,
        workflow_completion_retention_ms=h.workflow_completion_retention,
        enable_lazy_state=h.enable_lazy_state,
        **_retry_options(h),
    )


def _service(s: Service) -> ServiceSchema:
    handlers = {h.name: _handler(h, s) for h in s.handlers}
    if s.ty is ServiceType.WORKFLOW and sum(h.ty is HandlerType.WORKFLOW for h in handlers.values()) != 1:
        raise ManifestInvalid(f"workflow '{s.name}' must have exactly one workflow handler")
    return ServiceSchema(
        name=s.name,
        ty=s.ty,
        handlers=handlers,
        deployment_id="",
        revision=0,
        public=not s.ingress_private,
        documentation=s.documentation,
        metadata=dict(s.metadata or {}),
        inactivity_timeout_ms=s.inactivity_timeout,
        abort_timeout_ms=s.abort_timeout,
        journal_retention_ms=s.journal_retention,
        idempotency_retention_ms=s.idempotency_retention,
        enable_lazy_state=s.enable_lazy_state,
        **_retry_options(s),
    )


def registration_schemas(manifest: EndpointManifest) -> ParsedManifest:
    """The schemas of a manifest the model has read; ManifestInvalid when this server cannot serve it."""
    lo, hi = manifest.min_protocol_version, manifest.max_protocol_version
    if hi < MIN_SERVICE_PROTOCOL_VERSION or lo > MAX_SERVICE_PROTOCOL_VERSION:
        raise ManifestInvalid(
            f"[META0012] Received a bad response from the deployment: the service protocol versions "
            f"[{lo}, {hi}] are not supported by this server, which supports "
            f"[{int(MIN_SERVICE_PROTOCOL_VERSION)}, {int(MAX_SERVICE_PROTOCOL_VERSION)}]",
            "META0012",
        )
    services = tuple(_service(s) for s in manifest.services)
    return ParsedManifest(manifest.protocol_mode.value, lo, hi, services)


def parse_manifest(manifest: Any, *, version: int | None = None) -> ParsedManifest:
    """Read a manifest (a JSON value) of discovery `version` (None: any) into registration schemas."""
    try:
        model = EndpointManifest.from_json(manifest, version=version)
    except ManifestError as e:
        raise ManifestInvalid(str(e)) from None
    return registration_schemas(model)
