"""Upgrade tests (UpgradeWithNewInvocation / UpgradeWithInFlightInvocation) and the schema-compatibility rule
of re-registration: two SDK processes serve different versions of the same services; each scenario gets a
runtime of its own so the registrations it makes do not leak into other scenarios."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conformance.conftest import ALWAYS_SUSPENDING, DEFAULT, Runtime
from conformance.helpers import new_key
from pyrestate.testing import Admin, Ingress, ServiceApp, eventually, json_of, register_deployment

SERVICES = "UpgradeTest,AwakeableHolder,SchemaEvolution"


@pytest.fixture(scope="module")
def app_v1(service_app_factory: Callable[..., ServiceApp]) -> ServiceApp:
    return service_app_factory("upgrade-v1", SERVICES, {"E2E_UPGRADETEST_VERSION": "v1"})


@pytest.fixture(scope="module")
def app_v2(service_app_factory: Callable[..., ServiceApp]) -> ServiceApp:
    return service_app_factory(
        "upgrade-v2", SERVICES, {"E2E_UPGRADETEST_VERSION": "v2", "SCHEMA_EVOLUTION_VARIANT": "evolved"}
    )


@pytest.fixture(scope="module")
def app_service_type(service_app_factory: Callable[..., ServiceApp]) -> ServiceApp:
    return service_app_factory(
        "schema-service-type", "SchemaEvolution", {"SCHEMA_EVOLUTION_VARIANT": "service_type"}
    )


def _simple(ingress: Ingress) -> str:
    value: str = ingress.call_json("UpgradeTest", "executeSimple")
    return value


def _wait_for_version(ingress: Ingress, version: str) -> None:
    """New invocations go to the latest revision as soon as the registration is visible to the ingress."""

    def latest() -> None:
        assert _simple(ingress) == version

    eventually(latest)


def test_upgrade_with_new_invocation(
    runtime_factory: Callable[..., Runtime], app_v1: ServiceApp, app_v2: ServiceApp
) -> None:
    rt = runtime_factory(DEFAULT, "upgrade-new")
    with Ingress(rt.ingress_url) as ingress:
        register_deployment(rt.admin_url, app_v1.url, force=False)
        assert _simple(ingress) == "v1"
        register_deployment(rt.admin_url, app_v2.url, force=False)
        _wait_for_version(ingress, "v2")


@pytest.mark.parametrize("profile", ["default", "suspending"])
def test_upgrade_with_in_flight_invocation(
    runtime_factory: Callable[..., Runtime], app_v1: ServiceApp, app_v2: ServiceApp, profile: str
) -> None:
    # In the suspending profile the in-flight invocation suspends on its awakeable and is re-invoked after
    # the upgrade: it must still go to the deployment it started on.
    config = ALWAYS_SUSPENDING if profile == "suspending" else DEFAULT
    rt = runtime_factory(config, f"upgrade-in-flight-{profile}")
    with Ingress(rt.ingress_url) as ingress:
        register_deployment(rt.admin_url, app_v1.url, force=False)
        holder = new_key()
        inv = ingress.send_json("UpgradeTest", "executeComplex", holder)["invocationId"]

        def held() -> None:
            assert ingress.call_json("AwakeableHolder", "hasAwakeable", key=holder) is True

        eventually(held)
        register_deployment(rt.admin_url, app_v2.url, force=False)
        _wait_for_version(ingress, "v2")

        json_of(ingress.call("AwakeableHolder", "unlock", "go", key=holder))
        assert json_of(ingress.attach(inv)) == "v1"

        # A complex invocation started after the upgrade runs on v2 from start to end.
        holder = new_key()
        inv = ingress.send_json("UpgradeTest", "executeComplex", holder)["invocationId"]
        eventually(held)
        json_of(ingress.call("AwakeableHolder", "unlock", "go", key=holder))
        assert json_of(ingress.attach(inv)) == "v2"


def test_incompatible_registration_needs_force(
    runtime_factory: Callable[..., Runtime],
    app_v1: ServiceApp,
    app_v2: ServiceApp,
    app_service_type: ServiceApp,
) -> None:
    rt = runtime_factory(DEFAULT, "schema")
    with Admin(rt.admin_url) as admin, Ingress(rt.ingress_url) as ingress:
        first = admin.client.post("/deployments", json={"uri": app_v1.url, "force": False})
        assert first.status_code == 201, first.text

        # Changing the service type is refused without force/breaking, dry run included.
        for body in ({"force": False}, {}, {"force": False, "dry_run": True}):
            r = admin.client.post("/deployments", json={"uri": app_service_type.url, **body})
            assert r.status_code == 409, r.text
            assert r.json() == {
                "message": "[META0006] detected a new service revision for 'SchemaEvolution' changing the "
                "service type from previous revision. Service type cannot be changed across revisions.",
                "restate_code": "META0006",
            }
        assert admin.service("SchemaEvolution")["ty"] == "VirtualObject"

        # Removing a handler and changing a handler's type are accepted as a new revision.
        evolved = admin.client.post("/deployments", json={"uri": app_v2.url, "force": False})
        assert evolved.status_code == 201, evolved.text
        svc = admin.service("SchemaEvolution")
        assert svc["revision"] == 2
        assert [(h["name"], h["ty"]) for h in svc["handlers"]] == [("first", "Shared")]

        # `breaking` allows the type change without overwriting anything; the new revision serves.
        forced = admin.client.post("/deployments", json={"uri": app_service_type.url, "breaking": True})
        assert forced.status_code == 201, forced.text
        svc = admin.service("SchemaEvolution")
        assert (svc["ty"], svc["revision"]) == ("Service", 3)

        def serves() -> None:
            assert ingress.call_json("SchemaEvolution", "first") == "service_type"

        eventually(serves)

        # Registering a known address again without force changes nothing; with force it overwrites it
        # (and may change the type back).
        again = admin.client.post("/deployments", json={"uri": app_v1.url, "force": False})
        assert again.status_code == 200, again.text
        assert again.json()["id"] == first.json()["id"]
        assert admin.service("SchemaEvolution")["revision"] == 3
        overwritten = admin.client.post("/deployments", json={"uri": app_v1.url, "force": True})
        assert overwritten.status_code == 200, overwritten.text
        assert overwritten.json()["id"] == first.json()["id"]
        svc = admin.service("SchemaEvolution")
        assert (svc["ty"], svc["revision"], svc["deployment_id"]) == ("VirtualObject", 4, first.json()["id"])
