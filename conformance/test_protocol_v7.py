"""Service protocol V7 (experimental in Restate 1.7): negotiation, scoped calls and sends (`ctx.scope()`,
`ScopedContext`), what a handler learns from its Start message (scope, limit key, idempotency key), and a
scoped call on a runtime that speaks V6 only (retried with 573 until the server speaks V7).

Each scenario has a runtime of its own: V7 (and, on restate-server, vqueues, which its scoped invocations
need) is switched on for new clusters only."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conformance.conftest import DEFAULT, Runtime
from pyrestate.protocol.ids import InvocationId, partition_key_for_key
from pyrestate.testing import Admin, Ingress, ServiceApp, eventually, json_of, register_deployment

SERVICES = "ScopeEcho,ScopeProxy"
V7 = dataclasses.replace(
    DEFAULT,
    enable_protocol_v7=True,
    extra_env={**DEFAULT.extra_env, "RESTATE_EXPERIMENTAL_ENABLE_VQUEUES": "true"},
)


@pytest.fixture(scope="module")
def app(service_app_factory: Callable[..., ServiceApp]) -> ServiceApp:
    return service_app_factory("protocol-v7", SERVICES)


@pytest.fixture(scope="module")
def v7(runtime_factory: Callable[..., Runtime], app: ServiceApp) -> Iterator[tuple[Ingress, Admin]]:
    rt = runtime_factory(V7, "protocol-v7")
    register_deployment(rt.admin_url, app.url)
    with Ingress(rt.ingress_url) as ingress, Admin(rt.admin_url) as admin:
        yield ingress, admin


def _status(admin: Admin, inv: str) -> dict[str, Any]:
    [row] = admin.query(
        "SELECT target, scope, limit_key, pinned_service_protocol_version AS version, status, "
        f"idempotency_key, invoked_by FROM sys_invocation WHERE id = '{inv}'"
    )
    return row


def test_v7_is_negotiated_and_announced(v7: tuple[Ingress, Admin]) -> None:
    ingress, admin = v7
    assert admin.client.get("/version").json()["features"]["protocol_v7"] is True
    r = ingress.call("ScopeProxy", "me")
    me = json_of(r)
    inv = r.headers["x-restate-id"]
    assert me["id"] == inv and me["scope"] is None
    row = _status(admin, inv)
    assert row["version"] == 7
    # Plain ingress calls get a generated idempotency key, and V7 hands it to the handler.
    assert me["idempotencyKey"] == row["idempotency_key"] and len(me["idempotencyKey"]) == 26


def test_scoped_call(v7: tuple[Ingress, Admin]) -> None:
    ingress, admin = v7
    got = ingress.call_json(
        "ScopeProxy", "scopedCall", {"scope": "tenant-1", "limitKey": "user.7", "value": 42}
    )
    assert got == {"value": 42, "scope": "tenant-1", "limitKey": "user.7", "idempotencyKey": None}
    [row] = admin.query(
        "SELECT id, scope, limit_key, invoked_by, pinned_service_protocol_version AS version "
        "FROM sys_invocation WHERE target = 'ScopeEcho/echo' AND scope = 'tenant-1'"
    )
    assert (row["scope"], row["limit_key"], row["invoked_by"], row["version"]) == (
        "tenant-1",
        "user.7",
        "service",
        7,
    )
    # Everything in a scope is co-located: the scope is the callee's partition key.
    assert InvocationId.parse(row["id"]).partition_key == partition_key_for_key("tenant-1")


def test_scoped_call_with_idempotency_key_and_two_level_limit_key(v7: tuple[Ingress, Admin]) -> None:
    ingress, _ = v7
    req = {"scope": "tenant-2", "limitKey": "org/user", "value": "x", "idempotencyKey": "once"}
    first = ingress.call_json("ScopeProxy", "scopedCall", req)
    assert first == {"value": "x", "scope": "tenant-2", "limitKey": "org/user", "idempotencyKey": "once"}
    assert ingress.call_json("ScopeProxy", "scopedCall", req) == first


def test_scoped_send_and_generic_call(v7: tuple[Ingress, Admin]) -> None:
    ingress, admin = v7
    inv = ingress.call_json("ScopeProxy", "scopedSend", {"scope": "tenant-3", "value": "sent"})

    def done() -> None:
        row = _status(admin, inv)
        assert row["status"] == "completed" and row["scope"] == "tenant-3"

    eventually(done)
    assert json_of(ingress.call("ScopeEcho", "echo", "direct"))["scope"] is None
    generic = ingress.call_json("ScopeProxy", "genericScopedCall", {"scope": "tenant-4", "limitKey": "k"})
    assert generic == {
        "value": "generic",
        "scope": "tenant-4",
        "limitKey": "k",
        "idempotencyKey": None,
    }


def test_scoped_call_without_v7_keeps_retrying(
    runtime_factory: Callable[..., Runtime], app: ServiceApp
) -> None:
    if DEFAULT.enable_protocol_v7:
        pytest.skip("every runtime of this run speaks V7")
    rt = runtime_factory(DEFAULT, "protocol-v6")
    register_deployment(rt.admin_url, app.url)
    with Ingress(rt.ingress_url) as ingress, Admin(rt.admin_url) as admin:
        inv = ingress.send_json("ScopeProxy", "scopedCall", {"scope": "s", "value": 1})["invocationId"]

        def backing_off() -> None:
            [row] = admin.query(
                f"SELECT status, retry_count, last_failure FROM sys_invocation WHERE id = '{inv}'"
            )
            assert row["status"] == "backing-off" and row["retry_count"] >= 1, row
            unsupported = "Feature 'scope' is not supported by the negotiated protocol version"
            assert unsupported in row["last_failure"]

        eventually(backing_off)
        assert admin.kill(inv).status_code == 200
