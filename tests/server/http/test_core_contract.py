"""The ServerCore contract: the same checks against FakeCore (behind the HTTP tests) and the real EngineCore
(on a temporary SQLite data dir, with official-SDK services), so the fake is proven to answer as the engine.

FakeCore's invocations have canned ids (DONE_ID, PENDING_ID, …); each world names which of its invocations
is completed, which is running and which was never submitted, and the checks hold for both."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from http_fake_core import DONE_ID, PENDING_ID, UNKNOWN_ID, FakeCore

from pyrestate.protocol.ids import InvocationId, awakeable_id
from pyrestate.server.admin.manifest import parse_manifest
from pyrestate.server.config import ServerConfig
from pyrestate.server.core_api import (
    BadRequest,
    ById,
    ByWorkflow,
    CommandOutcome,
    Conflict,
    DeploymentRegistration,
    Failure,
    IngressInvocation,
    InvocationCommand,
    InvocationResult,
    InvocationTarget,
    NotFound,
    NotReady,
    ServerCore,
    ServicePatch,
    SubmitStatus,
    Success,
)
from pyrestate.server.engine.core import EngineCore
from pyrestate.server.invoker.discovery_client import discover
from pyrestate.testing import ServiceApp

HERE = Path(__file__).parent
JSON = (("content-type", "application/json"),)


@pytest.fixture(scope="module")
def contract_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceApp]:
    app = ServiceApp(
        "contract_services:app",
        pythonpath=[HERE],
        log_dir=tmp_path_factory.mktemp("contract"),
        name="contract-sdk",
    )
    app.start()
    try:
        yield app
    finally:
        app.close()


async def registration(url: str, **kw: bool) -> DeploymentRegistration:
    resp = await discover(url, use_http_11=False)
    parsed = parse_manifest(resp.manifest, version=resp.manifest_version)
    return DeploymentRegistration(
        uri=url,
        use_http_11=False,
        additional_headers={},
        protocol_mode=parsed.protocol_mode,
        min_protocol_version=parsed.min_protocol_version,
        max_protocol_version=parsed.max_protocol_version,
        sdk_version=None,
        services=parsed.services,
        **kw,
    )


def inv(service: str, handler: str, body: object, key: str | None = None, **kw: object) -> IngressInvocation:
    return IngressInvocation(InvocationTarget(service, handler, key), json.dumps(body).encode(), JSON, **kw)  # type: ignore[arg-type]


@dataclass
class World:
    core: ServerCore
    url: str  # the registered deployment's URI
    completed: str  # an invocation that completed (and whose completion is retained)
    running: str  # an invocation that runs until `finish` is awaited
    unknown: str  # a well-formed id nobody submitted
    finish: Callable[[], Awaitable[object]]


async def _nothing() -> None:
    return None


@pytest.fixture(params=["fake", "engine"])
async def world(
    request: pytest.FixtureRequest, tmp_path: Path, contract_app: ServiceApp
) -> AsyncIterator[World]:
    reg = await registration(contract_app.url)
    if request.param == "fake":
        fake = FakeCore(services=[])
        await fake.register_deployment(reg)
        yield World(fake, reg.uri, DONE_ID, PENDING_ID, UNKNOWN_ID, _nothing)
        return
    core = EngineCore(ServerConfig(data_dir=tmp_path / "data", partitions=4))
    await core.start()
    try:
        await core.register_deployment(reg)
        done = await core.call(inv("Counter", "add", 1, "c", idempotency_key="done"))
        wf_key = uuid.uuid4().hex
        running = await core.send(inv("Wf", "run", {"order": 1}, wf_key))
        never = InvocationId.for_idempotent_request("Counter", "add", "never", "c")
        yield World(
            core,
            reg.uri,
            done.invocation_id,
            running.invocation_id,
            str(never),
            lambda: core.call(inv("Wf", "release", None, wf_key)),
        )
    finally:
        await core.stop()


# ---------------------------------------------------------------- registration and schema


async def test_registering_the_same_uri_again(world: World) -> None:
    core = world.core
    [record] = await core.list_deployments()
    assert record.uri == world.url and await core.get_deployment(record.id) == record
    svc = core.lookup_service("Counter")
    assert svc is not None and (svc.deployment_id, svc.revision) == (record.id, 1)
    assert sorted(s.name for s in core.list_services()) == ["Counter", "Greeter", "Wf"]
    again = await core.register_deployment(await registration(world.url))
    assert not again.created and again.deployment == record
    forced = await core.register_deployment(await registration(world.url, force=True))
    assert not forced.created and forced.deployment.id == record.id
    assert {s.revision for s in forced.deployment.services} == {2}
    svc = core.lookup_service("Counter")
    assert svc is not None and svc.revision == 2
    with pytest.raises(NotFound):
        await core.get_deployment("dp_1" + "0" * 22)


async def test_dry_run_stores_nothing(world: World) -> None:
    before = await world.core.list_deployments()
    reg = replace(await registration(world.url), uri=world.url + "elsewhere/", dry_run=True)
    result = await world.core.register_deployment(reg)
    assert result.created and result.deployment.uri == reg.uri
    assert await world.core.list_deployments() == before


async def test_update_and_delete(world: World) -> None:
    core = world.core
    updated = await core.update_service("Counter", ServicePatch(public=False, idempotency_retention_ms=5000))
    assert (updated.public, updated.idempotency_retention_ms) == (False, 5000)
    assert core.lookup_service("Counter") == updated
    with pytest.raises(NotFound):
        await core.update_service("Nope", ServicePatch(public=False))
    [record] = await core.list_deployments()
    await core.delete_deployment(record.id)
    assert await core.list_deployments() == [] and core.lookup_service("Counter") is None
    with pytest.raises(NotFound):
        await core.delete_deployment(record.id)


# ---------------------------------------------------------------- ingress


async def test_unknown_targets(world: World) -> None:
    for bad, error in (
        (inv("Nope", "x", 1), NotFound),
        (inv("Counter", "nope", 1, "k"), NotFound),
        (inv("Counter", "add", 1), BadRequest),  # an object needs a key
    ):
        with pytest.raises(error):
            await world.core.call(bad)
        with pytest.raises(error):
            await world.core.send(bad)


async def test_idempotent_call_returns_the_first_outcome_with_its_expiry(world: World) -> None:
    key = uuid.uuid4().hex
    first = await world.core.call(inv("Counter", "add", 1, key, idempotency_key="once"))
    assert first.outcome == Success(b"1", "application/json") and first.expires_at_ms is None
    second = await world.core.call(inv("Counter", "add", 5, key, idempotency_key="once"))
    assert (second.invocation_id, second.outcome) == (first.invocation_id, first.outcome)
    assert second.expires_at_ms is not None


async def test_sends_dedup_and_delays(world: World) -> None:
    key = uuid.uuid4().hex
    first = await world.core.send(inv("Counter", "add", 1, key, idempotency_key="s"))
    assert (first.status, first.execution_time_ms) == (SubmitStatus.ACCEPTED, None)
    again = await world.core.send(inv("Counter", "add", 1, key, idempotency_key="s"))
    assert (again.status, again.invocation_id) == (SubmitStatus.PREVIOUSLY_ACCEPTED, first.invocation_id)
    now = await world.core.send(inv("Counter", "add", 1, key, idempotency_key="d0", delay_ms=0))
    assert now.execution_time_ms is None
    soon = await world.core.send(inv("Counter", "add", 1, key, idempotency_key="d1", delay_ms=60_000))
    later = await world.core.send(inv("Counter", "add", 1, key, idempotency_key="d2", delay_ms=120_000))
    assert soon.execution_time_ms is not None and later.execution_time_ms is not None
    assert abs(later.execution_time_ms - soon.execution_time_ms - 60_000) < 5_000


async def test_a_workflow_runs_once(world: World) -> None:
    key = uuid.uuid4().hex
    sent = await world.core.send(inv("Wf", "run", {"order": 2}, key))
    assert sent.status is SubmitStatus.ACCEPTED
    again = await world.core.send(inv("Wf", "run", {"order": 3}, key))
    assert (again.status, again.invocation_id) == (SubmitStatus.PREVIOUSLY_ACCEPTED, sent.invocation_id)
    dup = await world.core.call(inv("Wf", "run", {"order": 4}, key))
    already = Failure(409, "the workflow method was already invoked")
    assert dup == InvocationResult(sent.invocation_id, already)


async def test_output_and_attach_of_a_completed_invocation(world: World) -> None:
    out = await world.core.get_output(ById(world.completed))
    assert out.invocation_id == world.completed and isinstance(out.outcome, Success)
    assert out.expires_at_ms is not None
    assert await world.core.attach(ById(world.completed)) == out


async def test_output_of_a_running_invocation_then_attach(world: World) -> None:
    with pytest.raises(NotReady):
        await world.core.get_output(ById(world.running))
    await world.finish()
    attached = await world.core.attach(ById(world.running))
    assert attached.invocation_id == world.running
    assert isinstance(attached.outcome, Success) and attached.outcome.content_type == "application/json"


async def test_unknown_and_malformed_invocations(world: World) -> None:
    core = world.core
    for lookup in (core.get_output, core.attach):
        with pytest.raises(NotFound):
            await lookup(ById(world.unknown))
        with pytest.raises(NotFound):
            await lookup(ByWorkflow("Wf", "never-started-" + uuid.uuid4().hex))
        with pytest.raises(BadRequest):
            await lookup(ById("not-an-id"))
    for command in (InvocationCommand.CANCEL, InvocationCommand.KILL, InvocationCommand.PURGE):
        with pytest.raises(NotFound):
            await core.invocation_command(world.unknown, command)
        with pytest.raises(BadRequest):
            await core.invocation_command("not-an-id", command)


async def test_awakeables(world: World) -> None:
    with pytest.raises(BadRequest):
        await world.core.complete_awakeable("garbage", Success(b"1"))
    aid = awakeable_id(InvocationId.parse(world.unknown), 17)
    assert await world.core.complete_awakeable(aid, Failure(500, "no")) is None


# ---------------------------------------------------------------- admin commands and state


async def test_commands_on_a_completed_invocation(world: World) -> None:
    core = world.core
    for command in (InvocationCommand.CANCEL, InvocationCommand.KILL):
        with pytest.raises(Conflict):
            await core.invocation_command(world.completed, command)
    assert await core.invocation_command(world.completed, InvocationCommand.PURGE) is CommandOutcome.DONE
    with pytest.raises(NotFound):
        await core.get_output(ById(world.completed))
    with pytest.raises(NotFound):
        await core.invocation_command(world.completed, InvocationCommand.PURGE)


async def test_commands_on_a_running_invocation(world: World) -> None:
    core = world.core
    with pytest.raises(Conflict):
        await core.invocation_command(world.running, InvocationCommand.PURGE)
    assert await core.invocation_command(world.running, InvocationCommand.CANCEL) is CommandOutcome.ACCEPTED
    assert await core.invocation_command(world.running, InvocationCommand.KILL) is CommandOutcome.DONE


async def test_set_state(world: World) -> None:
    assert await world.core.set_state("Counter", "k", {"count": b"7"}) is None
    with pytest.raises(NotFound):
        await world.core.set_state("Nope", "k", {})
    with pytest.raises(BadRequest):
        await world.core.set_state("Greeter", "k", {})  # a plain service has no state
