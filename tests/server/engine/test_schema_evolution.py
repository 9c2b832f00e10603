"""Re-registration rules of the engine: which schema changes need `force`/`breaking`, what overwriting a
deployment does to its services, and that nothing is stored by a refused or dry-run registration.
No SDK process: registrations carry synthetic service schemas (discovery is the admin surface's job)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import fast_config

from pyrestate.server.core_api import (
    Conflict,
    DeploymentRegistration,
    HandlerSchema,
    HandlerType,
    ServiceSchema,
    ServiceType,
)
from pyrestate.server.engine.core import EngineCore
from pyrestate.server.engine.schema_admin import check_compatible

EXCL, SHARED = HandlerType.EXCLUSIVE, HandlerType.SHARED


def svc(name: str, ty: ServiceType, **handlers: HandlerType | None) -> ServiceSchema:
    return ServiceSchema(
        name=name,
        ty=ty,
        handlers={h: HandlerSchema(name=h, ty=t) for h, t in handlers.items()},
        deployment_id="",
        revision=0,
    )


def registration(uri: str, *services: ServiceSchema, **flags: bool) -> DeploymentRegistration:
    return DeploymentRegistration(
        uri=uri,
        use_http_11=False,
        additional_headers={},
        protocol_mode="BIDI_STREAM",
        min_protocol_version=5,
        max_protocol_version=6,
        sdk_version=None,
        services=services,
        **flags,
    )


OBJ = svc("Obj", ServiceType.VIRTUAL_OBJECT, a=EXCL, b=SHARED)
PLAIN = svc("Plain", ServiceType.SERVICE, x=None)


def current(engine: EngineCore, name: str) -> ServiceSchema:
    schema = engine.lookup_service(name)
    assert schema is not None, f"{name} is not registered"
    return schema


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[EngineCore]:
    c = EngineCore(fast_config(tmp_path / "data"))
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


def test_only_a_service_type_change_is_incompatible() -> None:
    check_compatible(OBJ, svc("Obj", ServiceType.VIRTUAL_OBJECT, a=EXCL))  # handler removed
    check_compatible(OBJ, svc("Obj", ServiceType.VIRTUAL_OBJECT, a=SHARED, b=SHARED))  # handler type
    check_compatible(OBJ, svc("Obj", ServiceType.VIRTUAL_OBJECT, a=EXCL, b=SHARED, c=EXCL))  # added
    for ty in (ServiceType.SERVICE, ServiceType.WORKFLOW):
        with pytest.raises(Conflict) as e:
            check_compatible(OBJ, svc("Obj", ty, a=None))
        assert str(e.value).startswith("[META0006] detected a new service revision for 'Obj' changing")


async def test_type_change_needs_force_or_breaking(engine: EngineCore) -> None:
    await engine.register_deployment(registration("http://v1/", OBJ, PLAIN))
    as_service = svc("Obj", ServiceType.SERVICE, a=None)
    for flags in ({}, {"dry_run": True}):
        with pytest.raises(Conflict):
            await engine.register_deployment(registration("http://v2/", as_service, **flags))
    # Nothing of the refused registrations was kept.
    assert [d.uri for d in await engine.list_deployments()] == ["http://v1/"]
    assert current(engine, "Obj").ty is ServiceType.VIRTUAL_OBJECT

    dry = await engine.register_deployment(
        registration("http://v2/", as_service, breaking=True, dry_run=True)
    )
    assert dry.created and dry.deployment.services[0].revision == 2
    assert current(engine, "Obj").revision == 1

    result = await engine.register_deployment(registration("http://v2/", as_service, breaking=True))
    assert result.created
    new = engine.lookup_service("Obj")
    assert new is not None and (new.ty, new.revision, new.deployment_id) == (
        ServiceType.SERVICE,
        2,
        result.deployment.id,
    )
    # Plain was not part of v2: it stays on v1.
    v1 = (await engine.list_deployments())[0]
    assert current(engine, "Plain").deployment_id == v1.id


async def test_same_address_without_force_returns_the_existing_deployment(engine: EngineCore) -> None:
    first = await engine.register_deployment(registration("http://v1/", OBJ))
    again = await engine.register_deployment(
        registration("http://v1/", svc("Obj", ServiceType.SERVICE, a=None))
    )
    assert (again.created, again.deployment.id) == (False, first.deployment.id)
    assert current(engine, "Obj").revision == 1


async def test_forced_overwrite_drops_services_the_deployment_no_longer_offers(
    engine: EngineCore, tmp_path: Path
) -> None:
    first = await engine.register_deployment(registration("http://v1/", OBJ, PLAIN))
    other_svc = svc("Other", ServiceType.SERVICE, y=None)
    other = await engine.register_deployment(registration("http://v2/", other_svc))
    over = await engine.register_deployment(registration("http://v1/", OBJ, force=True))
    assert (over.created, over.deployment.id) == (False, first.deployment.id)
    assert engine.lookup_service("Plain") is None
    assert current(engine, "Obj").revision == 2
    assert current(engine, "Other").deployment_id == other.deployment.id
    # Registered again later, the service starts over at revision 1.
    await engine.register_deployment(registration("http://v3/", PLAIN))
    assert current(engine, "Plain").revision == 1

    # The removal is durable.
    await engine.stop()
    reopened = EngineCore(fast_config(tmp_path / "data"))
    await reopened.start()
    try:
        assert sorted(s.name for s in reopened.list_services()) == ["Obj", "Other", "Plain"]
        assert current(reopened, "Plain").deployment_id != first.deployment.id
    finally:
        await reopened.stop()
