"""OpenAPI 3.1 documents: a service's ingress API (`GET /services/{s}/openapi`) and the admin API
(`GET /openapi`).

Pure functions over the registered schema; no IO. Handler JSON schemas are JSON Schema 2020-12, which is what
OpenAPI 3.1 embeds, so they go in unchanged except for `$defs`: a `#/$defs/X` reference would resolve against
the OpenAPI document's root, so every `$defs` entry moves to `components.schemas` and its references follow.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pyrestate.server.core_api import HandlerSchema, ServiceSchema, ServiceType

OPENAPI_VERSION = "3.1.0"
_JSON = "application/json"
_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "title": "Error",
        "properties": {
            "code": {"type": "integer", "description": "HTTP status of the failure"},
            "message": {"type": "string"},
            "source": {"type": "string", "description": "`ingress` or `invocation`"},
        },
        "required": ["message"],
    }


def _send_response_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "title": "SendResponse",
        "properties": {
            "invocationId": {"type": "string"},
            "status": {"type": "string", "enum": ["Accepted", "PreviouslyAccepted"]},
            "executionTime": {"type": "string", "format": "date-time"},
        },
        "required": ["invocationId", "status"],
    }


class _Components:
    """Collects schemas hoisted out of handler `$defs`, renaming on a clash with a different schema."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {"Error": _error_schema(), "SendResponse": _send_response_schema()}

    def embed(self, schema: object, prefix: str) -> object:
        if not isinstance(schema, Mapping):
            return schema  # booleans (`true` = anything) are valid schemas as they are
        schema = copy.deepcopy(dict(schema))
        defs = schema.pop("$defs", None)
        if not isinstance(defs, Mapping) or not defs:
            return schema
        renames: dict[str, str] = {}
        for name, sub in defs.items():
            target = str(name)
            if target in self.schemas and self.schemas[target] != sub:
                target = f"{prefix}{name}"
                n = 2
                while target in self.schemas and self.schemas[target] != sub:
                    target, n = f"{prefix}{name}{n}", n + 1
            renames[f"#/$defs/{name}"] = f"#/components/schemas/{target}"
            self.schemas[target] = sub
        for new_ref in renames.values():
            target = new_ref.rsplit("/", 1)[1]
            self.schemas[target] = _rewrite_refs(self.schemas[target], renames)
        return _rewrite_refs(schema, renames)


def _rewrite_refs(node: object, renames: Mapping[str, str]) -> Any:
    if isinstance(node, Mapping):
        out = {k: _rewrite_refs(v, renames) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str):
            for old, new in renames.items():
                if ref == old or ref.startswith(old + "/"):
                    out["$ref"] = new + ref[len(old) :]
                    break
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def _request_body(h: HandlerSchema, components: _Components, prefix: str) -> dict[str, Any] | None:
    if h.input_content_type is None:
        return None
    if h.input_json_schema is not None:
        content_type = _JSON
        schema: object = components.embed(h.input_json_schema, prefix)
    else:
        content_type = h.input_content_type or "*/*"
        schema = {}
    return {"required": h.input_required, "content": {content_type: {"schema": schema}}}


def _ok_response(h: HandlerSchema, components: _Components, prefix: str) -> dict[str, Any]:
    if h.output_content_type is None:
        return {"description": "Handler completed (no output)"}
    schema: object = {} if h.output_json_schema is None else components.embed(h.output_json_schema, prefix)
    content_type = _JSON if h.output_json_schema is not None else h.output_content_type
    return {"description": "Handler output", "content": {content_type: {"schema": schema}}}


def _errors() -> dict[str, Any]:
    return {"default": {"description": "Error", "content": {_JSON: {"schema": _ERROR_REF}}}}


def service_openapi(svc: ServiceSchema, ingress_url: str | None = None) -> dict[str, Any]:
    """The ingress API of one service: `POST /{svc}[/{key}]/{handler}` and `…/send` per public handler."""
    components = _Components()
    keyed = svc.ty is not ServiceType.SERVICE
    key_param = {
        "name": "key",
        "in": "path",
        "required": True,
        "description": "Workflow id" if svc.ty is ServiceType.WORKFLOW else "Object key",
        "schema": {"type": "string"},
    }
    idem_param = {
        "name": "idempotency-key",
        "in": "header",
        "required": False,
        "description": "Deduplicates retries of the same request",
        "schema": {"type": "string"},
    }
    delay_param = {
        "name": "delay",
        "in": "query",
        "required": False,
        "description": "Run the handler after this delay (e.g. `10s`, `PT1M`)",
        "schema": {"type": "string"},
    }
    paths: dict[str, Any] = {}
    for h in sorted(svc.handlers.values(), key=lambda h: h.name):
        if not h.public:
            continue
        base = f"/{svc.name}/{{key}}/{h.name}" if keyed else f"/{svc.name}/{h.name}"
        params = [key_param, idem_param] if keyed else [idem_param]
        prefix = f"{h.name[:1].upper()}{h.name[1:]}"
        body = _request_body(h, components, prefix)
        call: dict[str, Any] = {
            "operationId": h.name,
            "summary": f"Call {svc.name}/{h.name} and wait for its result",
            "parameters": params,
            "responses": {"200": _ok_response(h, components, prefix), **_errors()},
        }
        if h.documentation:
            call["description"] = h.documentation
        send: dict[str, Any] = {
            "operationId": f"{h.name}_send",
            "summary": f"Send {svc.name}/{h.name} without waiting",
            "parameters": [*params, delay_param],
            "responses": {
                "202": {
                    "description": "Accepted",
                    "content": {_JSON: {"schema": {"$ref": "#/components/schemas/SendResponse"}}},
                },
                **_errors(),
            },
        }
        if body is not None:
            call["requestBody"] = body
            send["requestBody"] = copy.deepcopy(body)
        paths[base] = {"post": call}
        paths[f"{base}/send"] = {"post": send}
    info: dict[str, Any] = {"title": svc.name, "version": str(svc.revision)}
    if svc.documentation:
        info["description"] = svc.documentation
    doc: dict[str, Any] = {"openapi": OPENAPI_VERSION, "info": info, "paths": paths}
    if ingress_url:
        doc["servers"] = [{"url": ingress_url.rstrip("/")}]
    doc["components"] = {"schemas": components.schemas}
    return doc


# ---------------------------------------------------------------------------- the admin API itself

_ERR = {"$ref": "#/components/responses/Error"}


def _op(
    op_id: str,
    summary: str,
    tag: str,
    ok: str = "200",
    ok_schema: object = None,
    body: object = None,
    params: tuple[str, ...] = (),
    query: tuple[tuple[str, object], ...] = (),
    ok_content_type: str = _JSON,
) -> dict[str, Any]:
    ok_response: dict[str, Any] = {"description": "OK"}
    if ok_schema is not None:
        ok_response["content"] = {ok_content_type: {"schema": ok_schema}}
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "responses": {ok: ok_response, "default": _ERR},
    }
    parameters = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
    ] + [{"name": n, "in": "query", "required": False, "schema": s} for n, s in query]
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": {_JSON: {"schema": body}}}
    return op


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _admin_schemas() -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "object"}
    return {
        "ErrorDescriptionResponse": {
            "type": "object",
            "properties": {"message": {"type": "string"}, "restate_code": {"type": ["string", "null"]}},
            "required": ["message"],
        },
        "VersionInformation": {
            "type": "object",
            "properties": {
                "version": {"type": "string"},
                "min_admin_api_version": {"type": "integer"},
                "max_admin_api_version": {"type": "integer"},
                "ingress_endpoint": {"type": "string"},
                "features": {"type": "object", "additionalProperties": {"type": "boolean"}},
            },
            "required": ["version", "min_admin_api_version", "max_admin_api_version"],
        },
        "RegisterDeploymentRequest": {
            "type": "object",
            "properties": {
                "uri": {"type": "string"},
                "additional_headers": {
                    "type": ["object", "null"],
                    "additionalProperties": {"type": "string"},
                },
                "use_http_11": {"type": "boolean"},
                "force": {"type": ["boolean", "null"]},
                "breaking": {"type": "boolean"},
                "dry_run": {"type": "boolean"},
            },
            "required": ["uri"],
        },
        "RegisterDeploymentResponse": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "services": {"type": "array", "items": _ref("ServiceMetadata")},
                "min_protocol_version": {"type": "integer"},
                "max_protocol_version": {"type": "integer"},
                "sdk_version": {"type": ["string", "null"]},
            },
            "required": ["id", "services"],
        },
        "DeploymentResponse": {**obj, "properties": {"id": {"type": "string"}, "uri": {"type": "string"}}},
        "ListDeploymentsResponse": {
            "type": "object",
            "properties": {"deployments": {"type": "array", "items": _ref("DeploymentResponse")}},
            "required": ["deployments"],
        },
        "HandlerMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "ty": {"type": "string", "enum": ["Exclusive", "Shared", "Workflow"]},
                "public": {"type": "boolean"},
                "input_description": {"type": "string"},
                "output_description": {"type": "string"},
                "input_json_schema": {},
                "output_json_schema": {},
            },
            "required": ["name"],
        },
        "ListServiceHandlersResponse": {
            "type": "object",
            "properties": {"handlers": {"type": "array", "items": _ref("HandlerMetadata")}},
            "required": ["handlers"],
        },
        "ServiceMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "ty": {"type": "string", "enum": ["Service", "VirtualObject", "Workflow"]},
                "handlers": {"type": "array", "items": _ref("HandlerMetadata")},
                "deployment_id": {"type": "string"},
                "revision": {"type": "integer"},
                "public": {"type": "boolean"},
                "idempotency_retention": {"type": "string"},
                "journal_retention": {"type": "string"},
                "inactivity_timeout": {"type": "string"},
                "abort_timeout": {"type": "string"},
                "workflow_completion_retention": {"type": "string"},
            },
            "required": ["name", "ty", "handlers", "deployment_id", "revision", "public"],
        },
        "ListServicesResponse": {
            "type": "object",
            "properties": {"services": {"type": "array", "items": _ref("ServiceMetadata")}},
            "required": ["services"],
        },
        "ModifyServiceRequest": {
            "type": "object",
            "properties": {
                "public": {"type": ["boolean", "null"]},
                "idempotency_retention": {"type": ["string", "null"]},
                "workflow_completion_retention": {"type": ["string", "null"]},
                "journal_retention": {"type": ["string", "null"]},
                "inactivity_timeout": {"type": ["string", "null"]},
                "abort_timeout": {"type": ["string", "null"]},
            },
        },
        "ModifyServiceStateRequest": {
            "type": "object",
            "properties": {
                "version": {"type": ["string", "null"]},
                "object_key": {"type": "string"},
                "new_state": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 0, "maximum": 255},
                    },
                },
            },
            "required": ["object_key", "new_state"],
        },
        "QueryRequest": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
        "QueryResponse": {
            "type": "object",
            "properties": {"rows": {"type": "array", "items": {"type": "object"}}},
            "required": ["rows"],
        },
        "OpenAPIDocument": {"type": "object", "description": "An OpenAPI 3.1 document"},
    }


def admin_openapi(version: str) -> dict[str, Any]:
    """The routes this admin API serves (also under `/v2` … `/v4`)."""
    svc, dep, inv, h = ("service",), ("deployment",), ("invocation_id",), ("service", "handler")
    inv_ops: dict[str, Any] = {}
    for verb, what, ok in (
        ("cancel", "Cancel an invocation (it unwinds with compensations)", "202"),
        ("kill", "Kill an invocation (no compensations)", "200"),
        ("purge", "Purge a completed invocation", "200"),
        ("purge-journal", "Purge the journal of a completed invocation", "200"),
        ("pause", "Pause a running invocation", "202"),
        ("resume", "Resume a paused invocation", "202"),
        ("restart-as-new", "Restart a completed invocation as a new one, optionally from a journal prefix",
         "200"),
    ):
        query: tuple[tuple[str, object], ...] = (
            (("deployment", {"type": "string"}),) if verb == "resume" else ()
        )
        if verb == "restart-as-new":
            query = (("from", {"type": "integer", "minimum": 0}), ("deployment", {"type": "string"}))
        inv_ops[f"/invocations/{{invocation_id}}/{verb}"] = {
            "patch": _op(
                f"{verb.replace('-', '_')}_invocation", what, "invocation", ok, params=inv, query=query
            )
        }
    paths: dict[str, Any] = {
        "/health": {"get": _op("health", "Admin API health", "health")},
        "/cluster-health": {"get": _op("cluster_health", "Cluster health (single node)", "cluster_health")},
        "/version": {
            "get": _op("version", "Server version", "version", ok_schema=_ref("VersionInformation"))
        },
        "/openapi": {
            "get": _op("openapi_spec", "This document", "openapi", ok_schema=_ref("OpenAPIDocument"))
        },
        "/deployments": {
            "get": _op("list_deployments", "List deployments", "deployment",
                       ok_schema=_ref("ListDeploymentsResponse")),
            "post": _op("create_deployment", "Discover and register a deployment", "deployment", "201",
                        _ref("RegisterDeploymentResponse"), _ref("RegisterDeploymentRequest")),
        },
        "/deployments/{deployment}": {
            "get": _op("get_deployment", "Get a deployment", "deployment",
                       ok_schema=_ref("DeploymentResponse"), params=dep),
            "delete": _op("delete_deployment", "Remove a deployment and its services (force=true)",
                          "deployment", "202", params=dep, query=(("force", {"type": "boolean"}),)),
            "patch": _op("update_deployment", "Change the address or headers (discovered again); the "
                         "services only with overwrite", "deployment", ok_schema=_ref("DeploymentResponse"),
                         params=dep),
        },
        "/services": {
            "get": _op("list_services", "List services", "service", ok_schema=_ref("ListServicesResponse"))
        },
        "/services/{service}": {
            "get": _op(
                "get_service", "Get a service", "service", ok_schema=_ref("ServiceMetadata"), params=svc
            ),
            "patch": _op("modify_service", "Change public flag, retentions and timeouts", "service",
                         ok_schema=_ref("ServiceMetadata"), body=_ref("ModifyServiceRequest"), params=svc),
        },
        "/services/{service}/openapi": {
            "get": _op("get_service_openapi", "OpenAPI 3.1 document of the service's ingress API",
                       "service", ok_schema=_ref("OpenAPIDocument"), params=svc)
        },
        "/services/{service}/state": {
            "post": _op("modify_service_state", "Replace the state of one object key", "service", "202",
                        body=_ref("ModifyServiceStateRequest"), params=svc)
        },
        "/services/{service}/handlers": {
            "get": _op("list_service_handlers", "List a service's handlers", "service_handler",
                       ok_schema=_ref("ListServiceHandlersResponse"), params=svc)
        },
        "/services/{service}/handlers/{handler}": {
            "get": _op("get_service_handler", "Get one handler", "service_handler",
                       ok_schema=_ref("HandlerMetadata"), params=h)
        },
        "/invocations/{invocation_id}": {
            "delete": _op("delete_invocation", "Cancel, kill or purge an invocation (deprecated)",
                          "invocation", "202", params=inv,
                          query=(("mode", {"type": "string", "enum": ["Cancel", "Kill", "Purge"]}),))
        },
        **inv_ops,
        "/query": {
            "post": _op("query", "SQL over the introspection tables (JSON with accept: application/json, "
                        "else Arrow IPC stream)", "introspection", ok_schema=_ref("QueryResponse"),
                        body=_ref("QueryRequest"))
        },
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "pyrestate admin API", "version": version},
        "paths": paths,
        "components": {
            "schemas": _admin_schemas(),
            "responses": {
                "Error": {
                    "description": "Error",
                    "content": {_JSON: {"schema": _ref("ErrorDescriptionResponse")}},
                }
            },
        },
    }
