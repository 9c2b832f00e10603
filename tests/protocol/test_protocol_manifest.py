"""Endpoint manifest model: the captured official-SDK manifest round-trips; invalid manifests are refused."""

from __future__ import annotations

import copy
import json
from dataclasses import fields
from typing import Any

import pytest
from protocol_captures import CAPTURES

from pyrestate.protocol.manifest import (
    EndpointManifest,
    Handler,
    HandlerType,
    InputPayload,
    ManifestError,
    OutputPayload,
    ProtocolMode,
    RetryOnMaxAttempts,
    Service,
    ServiceType,
)


def captured_manifest() -> dict[str, Any]:
    lines = (CAPTURES / "discovery-h2.txt").read_text().splitlines()
    body = "\n".join(lines[lines.index("{") :])
    data = json.loads(body)
    assert isinstance(data, dict)
    return data


def test_captured_manifest_round_trips() -> None:
    data = captured_manifest()
    m = EndpointManifest.from_json(data, version=4)
    assert m.to_json(4) == data
    assert json.loads(m.dumps(4)) == data
    assert EndpointManifest.loads(json.dumps(data)) == m
    # Nothing in it is newer than v2, so every version renders the same document.
    for v in (1, 2, 3):
        assert m.to_json(v) == data


def test_captured_manifest_content() -> None:
    m = EndpointManifest.from_json(captured_manifest())
    assert m.protocol_mode is ProtocolMode.BIDI_STREAM
    assert (m.min_protocol_version, m.max_protocol_version) == (5, 7)
    wf = m.service("Wf")
    assert wf is not None and wf.ty is ServiceType.WORKFLOW
    run = wf.handler("run")
    assert run is not None and run.ty is HandlerType.WORKFLOW
    stage = wf.handler("stage")
    assert stage is not None and stage.input == InputPayload()  # `"input": {}`: no body
    assert stage.input.to_json() == {}
    counter = m.service("Counter")
    assert counter is not None
    add = counter.handler("add")
    assert add is not None and add.effective_type(counter.ty) is HandlerType.EXCLUSIVE
    task = m.service("taskWorker")
    assert task is not None
    h = task.handler("runTask")
    assert h is not None and h.ty is None and h.effective_type(task.ty) is None
    assert h.input is not None and h.input.json_schema is True


def full_manifest() -> EndpointManifest:
    return EndpointManifest(
        protocol_mode=ProtocolMode.REQUEST_RESPONSE,
        min_protocol_version=5,
        max_protocol_version=7,
        lambda_compression="zstd",
        services=(
            Service(
                name="Orders",
                ty=ServiceType.WORKFLOW,
                documentation="Order workflow",
                metadata={"team": "a"},
                inactivity_timeout=1000,
                abort_timeout=2000,
                journal_retention=3000,
                idempotency_retention=4000,
                enable_lazy_state=True,
                ingress_private=False,
                retry_policy_initial_interval=10,
                retry_policy_max_interval=100,
                retry_policy_max_attempts=3,
                retry_policy_exponentiation_factor=2.0,
                retry_policy_on_max_attempts=RetryOnMaxAttempts.PAUSE,
                handlers=(
                    Handler(
                        name="run",
                        ty=HandlerType.WORKFLOW,
                        input=InputPayload(content_type="application/json", required=True, json_schema={}),
                        output=OutputPayload(content_type="application/json", set_content_type_if_empty=True),
                        documentation="Runs it",
                        metadata={"k": "v"},
                        workflow_completion_retention=86_400_000,
                        retry_policy_on_max_attempts=RetryOnMaxAttempts.KILL,
                    ),
                    Handler(name="peek", ty=HandlerType.SHARED, idempotency_retention=5),
                ),
            ),
        ),
    )


def test_full_manifest_v4_round_trip() -> None:
    m = full_manifest()
    data = m.to_json(4)
    assert data["lambdaCompression"] == "zstd"
    svc = data["services"][0]
    assert svc["retryPolicyOnMaxAttempts"] == "PAUSE"
    assert svc["handlers"][0]["workflowCompletionRetention"] == 86_400_000
    assert svc["handlers"][0]["input"] == {
        "required": True,
        "contentType": "application/json",
        "jsonSchema": {},
    }
    assert EndpointManifest.from_json(data, version=4) == m


def test_lower_versions_refuse_retry_policy_like_the_official_sdk() -> None:
    with pytest.raises(
        ManifestError, match=r"retryPolicy\w+ is only supported in discovery protocol version 4"
    ):
        full_manifest().to_json(3)


def test_lower_versions_refuse_v3_options_and_drop_informational_fields() -> None:
    m = EndpointManifest(
        ProtocolMode.BIDI_STREAM,
        5,
        7,
        (
            Service(
                "S",
                ServiceType.SERVICE,
                (Handler("h", documentation="d", metadata={"a": "b"}),),
                documentation="doc",
                metadata={"x": "y"},
            ),
        ),
        lambda_compression="zstd",
    )
    v4 = m.to_json(4)
    assert v4["lambdaCompression"] == "zstd"
    v3 = m.to_json(3)
    assert "lambdaCompression" not in v3  # dropped, as the official SDK does below v4
    assert v3["services"][0]["documentation"] == "doc"
    v1 = m.to_json(1)
    assert "documentation" not in v1["services"][0] and "metadata" not in v1["services"][0]
    assert v1["services"][0]["handlers"][0] == {"name": "h"}

    with_option = EndpointManifest(
        ProtocolMode.BIDI_STREAM,
        5,
        7,
        (Service("S", ServiceType.SERVICE, (Handler("h", inactivity_timeout=5),)),),
    )
    assert with_option.to_json(3)["services"][0]["handlers"][0]["inactivityTimeout"] == 5
    with pytest.raises(
        ManifestError, match="inactivityTimeout is only supported in discovery protocol version 3"
    ):
        with_option.to_json(2)


@pytest.mark.parametrize("version", [0, 5, -1])
def test_to_json_rejects_unknown_versions(version: int) -> None:
    with pytest.raises(ManifestError, match="unsupported discovery version"):
        full_manifest().to_json(version)


def test_from_json_with_version_rejects_newer_fields() -> None:
    data = full_manifest().to_json(4)
    with pytest.raises(ManifestError, match="not part of discovery protocol version 3"):
        EndpointManifest.from_json(data, version=3)


def test_string_enums_are_accepted_by_constructors() -> None:
    s = Service("S", "VIRTUAL_OBJECT", [Handler("h", ty="SHARED")])  # type: ignore[arg-type]
    assert s.ty is ServiceType.VIRTUAL_OBJECT
    assert s.handlers[0].ty is HandlerType.SHARED
    assert isinstance(s.handlers, tuple)


def _mutate(path: str, value: Any = None, *, delete: bool = False) -> dict[str, Any]:
    data = copy.deepcopy(captured_manifest())
    target: Any = data
    parts = path.split(".")
    for p in parts[:-1]:
        target = target[int(p)] if p.isdigit() else target[p]
    last = parts[-1]
    if delete:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_mutate("protocolMode", delete=True), "missing required field 'protocolMode'"),
        (_mutate("protocolMode", "DUPLEX"), "protocolMode: 'DUPLEX' is not one of"),
        (_mutate("minProtocolVersion", delete=True), "missing required field 'minProtocolVersion'"),
        (_mutate("minProtocolVersion", 8), "greater than maxProtocolVersion"),
        (_mutate("maxProtocolVersion", 0), r"maxProtocolVersion: must be in \[1"),
        (_mutate("maxProtocolVersion", 2**31), r"maxProtocolVersion: must be in \[1"),
        (_mutate("maxProtocolVersion", "7"), "expected an integer"),
        (_mutate("maxProtocolVersion", True), "expected an integer"),
        (_mutate("services", delete=True), "missing required field 'services'"),
        (_mutate("services", {}), "expected an array"),
        (_mutate("extra", 1), "unknown field"),
        (_mutate("lambdaCompression", "gzip"), "not one of zstd"),
        (_mutate("services.0.name", "9bad"), "invalid service name"),
        (_mutate("services.0.name", "_"), "invalid service name"),
        (_mutate("services.0.name", "Counter"), "duplicate service name"),
        (_mutate("services.0.ty", delete=True), "missing required field 'ty'"),
        (_mutate("services.0.ty", "ACTOR"), "is not one of"),
        (_mutate("services.0.handlers", delete=True), "missing required field 'handlers'"),
        (_mutate("services.0.foo", 1), r"services\[0\]: unknown field\(s\) foo"),
        (_mutate("services.0.inactivityTimeout", -1), "must be >= 0"),
        (_mutate("services.0.metadata", {"a": 1}), "metadata.a: expected a string"),
        (_mutate("services.0.retryPolicyOnMaxAttempts", "RETRY"), "is not one of PAUSE, KILL"),
        (_mutate("services.0.retryPolicyExponentiationFactor", "x"), "expected a finite number"),
        (_mutate("services.0.handlers.0.name", "run-task"), "invalid handler name"),
        (_mutate("services.0.handlers.0.name", delete=True), "missing required field 'name'"),
        (_mutate("services.0.handlers.0.ty", "SHARED"), "plain service must not set a type"),
        (_mutate("services.0.handlers.0.bar", 1), r"handlers\[0\]: unknown field"),
        (_mutate("services.0.handlers.0.input.accept", "x"), r"input: unknown field\(s\) accept"),
        (_mutate("services.0.handlers.0.input.required", "no"), "expected a boolean"),
        (_mutate("services.0.handlers.0.output.setContentTypeIfEmpty", 0), "expected a boolean"),
        (_mutate("services.0.handlers.0.output", []), "expected an object"),
        (_mutate("services.0.handlers.0.workflowCompletionRetention", 5), "only valid on WORKFLOW handlers"),
        (_mutate("services.2.handlers.0.ty", "WORKFLOW"), "virtual object cannot have a WORKFLOW handler"),
        (_mutate("services.4.handlers.1.ty", "EXCLUSIVE"), "workflow cannot have an EXCLUSIVE handler"),
        (_mutate("services.4.handlers.0.idempotencyRetention", 5), "not valid on WORKFLOW handlers"),
        (_mutate("services.3.handlers.1.name", "add"), "duplicate handler name 'add'"),
    ],
)
def test_invalid_manifests_are_refused_with_a_clear_message(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        EndpointManifest.from_json(data)


def test_not_an_object_and_not_json() -> None:
    with pytest.raises(ManifestError, match="expected an object"):
        EndpointManifest.from_json([])
    with pytest.raises(ManifestError, match="not valid JSON"):
        EndpointManifest.loads(b"{nope")


def test_null_optional_fields_are_treated_as_absent() -> None:
    data = _mutate("services.0.documentation", None)
    assert EndpointManifest.from_json(data) == EndpointManifest.from_json(captured_manifest())


def test_every_model_field_has_a_json_mapping() -> None:
    # Guards against adding a dataclass field that to_json/from_json would silently ignore.
    for cls in (Handler, Service):
        covered = {f.attr for f in cls._TABLE} | cls._KEYS
        assert {f.name for f in fields(cls)} <= covered, cls
