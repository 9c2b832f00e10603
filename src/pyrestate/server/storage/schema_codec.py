"""JSON documents for deployments and service schemas as stored in the schema tables."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pyrestate.server.core_api import DeploymentRecord, HandlerSchema, HandlerType, ServiceSchema, ServiceType


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, ServiceType | HandlerType):
        return obj.admin_name
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def handler_from_dict(d: dict[str, Any]) -> HandlerSchema:
    d = dict(d)
    d["ty"] = HandlerType.from_admin_name(d["ty"]) if d.get("ty") else None
    d["metadata"] = dict(d.get("metadata") or {})
    known = {f.name for f in dataclasses.fields(HandlerSchema)}
    return HandlerSchema(**{k: v for k, v in d.items() if k in known})


def service_to_json(s: ServiceSchema) -> bytes:
    return json.dumps(_plain(s), separators=(",", ":")).encode()


def service_from_dict(d: dict[str, Any]) -> ServiceSchema:
    d = dict(d)
    d["ty"] = ServiceType.from_admin_name(d["ty"])
    d["handlers"] = {name: handler_from_dict(h) for name, h in d["handlers"].items()}
    d["metadata"] = dict(d.get("metadata") or {})
    known = {f.name for f in dataclasses.fields(ServiceSchema)}
    return ServiceSchema(**{k: v for k, v in d.items() if k in known})


def service_from_json(raw: bytes) -> ServiceSchema:
    return service_from_dict(json.loads(raw))


def deployment_to_json(dp: DeploymentRecord) -> bytes:
    return json.dumps(_plain(dp), separators=(",", ":")).encode()


def deployment_from_json(raw: bytes) -> DeploymentRecord:
    d = json.loads(raw)
    d["services"] = tuple(service_from_dict(s) for s in d["services"])
    d["additional_headers"] = dict(d.get("additional_headers") or {})
    known = {f.name for f in dataclasses.fields(DeploymentRecord)}
    return DeploymentRecord(**{k: v for k, v in d.items() if k in known})
