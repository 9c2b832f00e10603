"""From a discovered endpoint manifest (JSON object) to the schemas registration stores. Pure code.

Checks what the server relies on (names, types, protocol range, option types) and applies the manifest
defaults: a missing `input` accepts anything or nothing, `input: {}` accepts nothing, a missing `output`
is JSON, a handler without `ty` is exclusive in objects and the run handler in workflows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyrestate.protocol.versions import MAX_SERVICE_PROTOCOL_VERSION, MIN_SERVICE_PROTOCOL_VERSION
from pyrestate.server.core_api import HandlerSchema, HandlerType, ServiceSchema, ServiceType

_SERVICE_NAME = re.compile(r"([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9._-]*")
_HANDLER_NAME = re.compile(r"([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9_]*")
_SERVICE_TYPES = {
    "SERVICE": ServiceType.SERVICE,
    "VIRTUAL_OBJECT": ServiceType.VIRTUAL_OBJECT,
    "WORKFLOW": ServiceType.WORKFLOW,
}
_HANDLER_TYPES = {
    "EXCLUSIVE": HandlerType.EXCLUSIVE,
    "SHARED": HandlerType.SHARED,
    "WORKFLOW": HandlerType.WORKFLOW,
}
_PROTOCOL_MODES = ("BIDI_STREAM", "REQUEST_RESPONSE")


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


def _opt_ms(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ManifestInvalid(f"{where}: '{key}' must be a non-negative integer of milliseconds")
    return v


def _opt_bool(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise ManifestInvalid(f"{where}: '{key}' must be a boolean")
    return v


def _opt_str_map(obj: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    v = obj.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise ManifestInvalid(f"{where}: '{key}' must be an object of strings")
    return dict(v)


def _retry_options(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "retry_initial_interval_ms": _opt_ms(obj, "retryPolicyInitialInterval", where),
        "retry_max_interval_ms": _opt_ms(obj, "retryPolicyMaxInterval", where),
    }
    attempts = obj.get("retryPolicyMaxAttempts")
    if attempts is not None and (not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0):
        raise ManifestInvalid(f"{where}: 'retryPolicyMaxAttempts' must be a non-negative integer")
    out["retry_max_attempts"] = attempts
    factor = obj.get("retryPolicyExponentiationFactor")
    if factor is not None and (not isinstance(factor, int | float) or isinstance(factor, bool)):
        raise ManifestInvalid(f"{where}: 'retryPolicyExponentiationFactor' must be a number")
    out["retry_exponentiation_factor"] = None if factor is None else float(factor)
    on_max = obj.get("retryPolicyOnMaxAttempts")
    if on_max is not None and on_max not in ("PAUSE", "KILL"):
        raise ManifestInvalid(f"{where}: 'retryPolicyOnMaxAttempts' must be PAUSE or KILL")
    out["retry_on_max_attempts"] = on_max
    return out


def _handler(raw: Any, service_ty: ServiceType, service: str) -> HandlerSchema:
    if not isinstance(raw, dict):
        raise ManifestInvalid(f"service '{service}': every handler must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not _HANDLER_NAME.fullmatch(name):
        raise ManifestInvalid(f"service '{service}': invalid handler name {name!r}")
    where = f"handler '{service}/{name}'"
    ty_raw = raw.get("ty")
    ty: HandlerType | None
    if service_ty is ServiceType.SERVICE:
        if ty_raw is not None:
            raise ManifestInvalid(f"{where}: handlers of a plain service must not declare 'ty'")
        ty = None
    elif ty_raw is None:
        ty = HandlerType.EXCLUSIVE if service_ty is ServiceType.VIRTUAL_OBJECT else HandlerType.WORKFLOW
    else:
        ty = _HANDLER_TYPES.get(ty_raw) if isinstance(ty_raw, str) else None
        if ty is None:
            raise ManifestInvalid(f"{where}: unknown handler type {ty_raw!r}")
        if ty is HandlerType.WORKFLOW and service_ty is not ServiceType.WORKFLOW:
            raise ManifestInvalid(f"{where}: only workflows can have a workflow handler")

    # input: absent → anything or nothing; {} → nothing; otherwise the declared content type
    inp = raw.get("input")
    input_ct: str | None = "*/*"
    required = False
    in_schema: object | None = None
    if inp is not None:
        if not isinstance(inp, dict):
            raise ManifestInvalid(f"{where}: 'input' must be an object")
        in_schema = inp.get("jsonSchema")
        ct = inp.get("contentType")
        if ct is None and in_schema is not None:
            ct = "application/json"
        if ct is not None and not isinstance(ct, str):
            raise ManifestInvalid(f"{where}: 'input.contentType' must be a string")
        input_ct = ct
        required = bool(inp.get("required", False))
        if ct is not None and "/" not in ct:
            raise ManifestInvalid(f"{where}: can't parse the content-type '{ct}': must contain one /")
        if ct is not None and ct.strip().startswith("*/") and ct.strip() != "*/*":
            raise ManifestInvalid(f"{where}: the wildcard format */subType is not supported")

    out = raw.get("output")
    output_ct: str | None = "application/json"
    set_if_empty = False
    out_schema: object | None = None
    if out is not None:
        if not isinstance(out, dict):
            raise ManifestInvalid(f"{where}: 'output' must be an object")
        output_ct = out.get("contentType")
        if output_ct is not None and not isinstance(output_ct, str):
            raise ManifestInvalid(f"{where}: 'output.contentType' must be a string")
        set_if_empty = bool(out.get("setContentTypeIfEmpty", False))
        out_schema = out.get("jsonSchema")

    private = _opt_bool(raw, "ingressPrivate", where)
    if raw.get("idempotencyRetention") is not None and ty is HandlerType.WORKFLOW:
        raise ManifestInvalid(f"{where}: workflow handlers cannot set 'idempotencyRetention'")
    if raw.get("workflowCompletionRetention") is not None and ty is not HandlerType.WORKFLOW:
        raise ManifestInvalid(f"{where}: only workflow handlers can set 'workflowCompletionRetention'")
    doc = raw.get("documentation")
    return HandlerSchema(
        name=name,
        ty=ty,
        input_required=required,
        input_content_type=input_ct,
        input_json_schema=in_schema,
        output_content_type=output_ct,
        output_set_content_type_if_empty=set_if_empty,
        output_json_schema=out_schema,
        public=not private if private is not None else True,
        documentation=doc if isinstance(doc, str) else None,
        metadata=_opt_str_map(raw, "metadata", where),
        inactivity_timeout_ms=_opt_ms(raw, "inactivityTimeout", where),
        abort_timeout_ms=_opt_ms(raw, "abortTimeout", where),
        journal_retention_ms=_opt_ms(raw, "journalRetention", where),
        idempotency_retention_ms=_opt_ms(raw, "idempotencyRetention", where),
        workflow_completion_retention_ms=_opt_ms(raw, "workflowCompletionRetention", where),
        enable_lazy_state=_opt_bool(raw, "enableLazyState", where),
        **_retry_options(raw, where),
    )


def _service(raw: Any) -> ServiceSchema:
    if not isinstance(raw, dict):
        raise ManifestInvalid("every service must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not _SERVICE_NAME.fullmatch(name):
        raise ManifestInvalid(f"invalid service name {name!r}")
    ty_raw = raw.get("ty")
    ty = _SERVICE_TYPES.get(ty_raw) if isinstance(ty_raw, str) else None
    if ty is None:
        raise ManifestInvalid(f"service '{name}': unknown service type {raw.get('ty')!r}")
    handlers_raw = raw.get("handlers")
    if not isinstance(handlers_raw, list):
        raise ManifestInvalid(f"service '{name}': 'handlers' must be an array")
    handlers: dict[str, HandlerSchema] = {}
    for h_raw in handlers_raw:
        h = _handler(h_raw, ty, name)
        if h.name in handlers:
            raise ManifestInvalid(f"service '{name}': duplicate handler '{h.name}'")
        handlers[h.name] = h
    if ty is ServiceType.WORKFLOW and sum(h.ty is HandlerType.WORKFLOW for h in handlers.values()) != 1:
        raise ManifestInvalid(f"workflow '{name}' must have exactly one workflow handler")
    where = f"service '{name}'"
    private = _opt_bool(raw, "ingressPrivate", where)
    doc = raw.get("documentation")
    return ServiceSchema(
        name=name,
        ty=ty,
        handlers=handlers,
        deployment_id="",
        revision=0,
        public=not private if private is not None else True,
        documentation=doc if isinstance(doc, str) else None,
        metadata=_opt_str_map(raw, "metadata", where),
        inactivity_timeout_ms=_opt_ms(raw, "inactivityTimeout", where),
        abort_timeout_ms=_opt_ms(raw, "abortTimeout", where),
        journal_retention_ms=_opt_ms(raw, "journalRetention", where),
        idempotency_retention_ms=_opt_ms(raw, "idempotencyRetention", where),
        workflow_completion_retention_ms=_opt_ms(raw, "workflowCompletionRetention", where),
        enable_lazy_state=_opt_bool(raw, "enableLazyState", where),
        **_retry_options(raw, where),
    )


def parse_manifest(manifest: Any, *, use_http_11: bool) -> ParsedManifest:
    if not isinstance(manifest, dict):
        raise ManifestInvalid("the endpoint manifest must be a JSON object")
    mode = manifest.get("protocolMode")
    if mode is None:
        mode = "REQUEST_RESPONSE" if use_http_11 else "BIDI_STREAM"
    if mode not in _PROTOCOL_MODES:
        raise ManifestInvalid(f"unknown protocolMode {mode!r}")
    lo, hi = manifest.get("minProtocolVersion"), manifest.get("maxProtocolVersion")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v < 2**31 for v in (lo, hi)):
        raise ManifestInvalid("minProtocolVersion and maxProtocolVersion must be positive integers")
    assert isinstance(lo, int) and isinstance(hi, int)
    if lo > hi:
        raise ManifestInvalid(f"minProtocolVersion {lo} is greater than maxProtocolVersion {hi}")
    if hi < MIN_SERVICE_PROTOCOL_VERSION or lo > MAX_SERVICE_PROTOCOL_VERSION:
        raise ManifestInvalid(
            f"[META0012] Received a bad response from the deployment: the service protocol versions "
            f"[{lo}, {hi}] are not supported by this server, which supports "
            f"[{int(MIN_SERVICE_PROTOCOL_VERSION)}, {int(MAX_SERVICE_PROTOCOL_VERSION)}]",
            "META0012",
        )
    services_raw = manifest.get("services")
    if not isinstance(services_raw, list):
        raise ManifestInvalid("'services' must be an array")
    services: dict[str, ServiceSchema] = {}
    for raw in services_raw:
        s = _service(raw)
        if s.name in services:
            raise ManifestInvalid(f"duplicate service '{s.name}'")
        services[s.name] = s
    return ParsedManifest(mode, lo, hi, tuple(services.values()))
