"""Flow control (a preview in Restate 1.7, behind the vqueues switch): the rule book endpoints and
concurrency limits per scope, checked the same way against either server.

Each scenario has a runtime of its own with V7 and vqueues switched on (both only for new clusters on
restate-server)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from conformance.conftest import DEFAULT, Runtime
from pyrestate.testing import Admin, ServiceApp, eventually, register_deployment

FLOW = dataclasses.replace(
    DEFAULT,
    enable_protocol_v7=True,
    extra_env={
        **DEFAULT.extra_env,
        "RESTATE_EXPERIMENTAL_ENABLE_VQUEUES": "true",
        "PYRESTATE_EXPERIMENTAL_ENABLE_VQUEUES": "true",
    },
)


@pytest.fixture(scope="module")
def app(service_app_factory: Callable[..., ServiceApp]) -> ServiceApp:
    return service_app_factory("flow-control", "Limited")


@pytest.fixture(scope="module")
def flow(runtime_factory: Callable[..., Runtime], app: ServiceApp) -> Iterator[tuple[Runtime, Admin]]:
    rt = runtime_factory(FLOW, "flow-control")
    register_deployment(rt.admin_url, app.url)
    with Admin(rt.admin_url) as admin:
        yield rt, admin


def _put(admin: Admin, body: Any) -> httpx.Response:
    return admin.client.put("/limits/rules", json=body)


def _delete(admin: Admin, body: Any) -> httpx.Response:
    return admin.client.post("/limits/rules/bulk-delete", json=body)


def _strip_time(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "last_modified_millis_since_epoch"} for r in rules]


def test_rule_book_versions_preconditions_and_validation(flow: tuple[Runtime, Admin]) -> None:
    _, admin = flow
    r = _put(admin, [{"pattern": "rb1", "limits": {"concurrency": 2}}])
    assert r.status_code == 200
    [first] = r.json()
    base = first["version"]
    assert _strip_time(r.json()) == [
        {"pattern": "rb1", "limits": {"concurrency": 2}, "disabled": False, "version": base}
    ]
    # A change of the limit bumps the rule's version; of the description only, nothing but the text.
    [changed] = _put(admin, [{"pattern": "rb1", "limits": {"concurrency": 3}}]).json()
    assert changed["version"] == base + 1
    [described] = _put(admin, [{"pattern": "rb1", "limits": {"concurrency": 3}, "description": "d"}]).json()
    assert (described["version"], described["description"]) == (base + 1, "d")
    assert described["last_modified_millis_since_epoch"] == changed["last_modified_millis_since_epoch"]
    # A new rule takes the book's version: three batches changed something so far.
    [other] = _put(admin, [{"pattern": "rb2/*", "limits": {}}]).json()
    assert other["version"] == base + 3 and other["limits"] == {}
    # Preconditions: the batch is atomic.
    r = _put(
        admin,
        [
            {"pattern": "rb3", "limits": {"concurrency": 1}, "precondition": {"type": "does_not_exist"}},
            {"pattern": "rb1", "precondition": {"type": "matches", "version": base}},
        ],
    )
    assert r.status_code == 409
    assert r.json() == {
        "message": f"rule precondition Matches(v{base}) for pattern rb1 failed "
        f"(actual version: Some(v{base + 1}))",
        "restate_code": None,
    }
    r = _delete(admin, [{"pattern": "rb3", "expected_version": 1}])
    assert r.status_code == 409
    assert (
        r.json()["message"] == "rule precondition Matches(v1) for pattern rb3 failed (actual version: None)"
    )
    # Validation answers 422 text/plain.
    for bad, why in [
        ({"pattern": "rb4", "limits": {"concurrency": 0}}, "[0].limits.concurrency: invalid value"),
        ({"pattern": "a/b/c/d"}, "[0].pattern: too many path components (max 3)"),
        ({"pattern": ""}, "[0].pattern: pattern cannot be empty"),
        ({"pattern": "a b"}, "[0].pattern: invalid component: value contains characters outside"),
    ]:
        r = _put(admin, [bad])
        assert r.status_code == 422, bad
        assert r.text.startswith(f"Failed to deserialize the JSON body into the target type: {why}")
    assert admin.client.get("/limits/rules").status_code == 405
    # Trailing slash dropped; deletes answer what they removed.
    assert _put(admin, [{"pattern": "rb5/", "limits": {"concurrency": 1}}]).json()[0]["pattern"] == "rb5"
    assert _delete(admin, [{"pattern": "rb5"}, {"pattern": "absent"}]).json() == ["rb5"]
    rows = admin.query("SELECT pattern, concurrency, description, disabled FROM sys_rules ORDER BY pattern")
    patterns = [row["pattern"] for row in rows]
    assert "rb1" in patterns and "rb2/*" in patterns and "rb5" not in patterns


def _send(ingress: str, scope: str, n: int, ms: int, limit_key: str | None = None) -> str:
    headers = {"x-restate-limit-key": limit_key} if limit_key else {}
    r = httpx.post(
        f"{ingress}/restate/scope/{scope}/send/Limited/work", json={"n": n, "ms": ms}, headers=headers
    )
    assert r.status_code == 202, r.text
    return str(r.json()["invocationId"])


def _stats(ingress: str) -> dict[str, Any]:
    return dict(httpx.post(f"{ingress}/Limited/stats", timeout=10).json())


def test_never_more_than_the_limit_and_all_complete(flow: tuple[Runtime, Admin]) -> None:
    rt, admin = flow
    assert _put(admin, [{"pattern": "load", "limits": {"concurrency": 3}}]).status_code == 200
    httpx.post(f"{rt.ingress_url}/Limited/reset")
    with ThreadPoolExecutor(10) as pool:
        ids = list(pool.map(lambda n: _send(rt.ingress_url, "load", n, 150), range(50)))
    seen_pending = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = admin.query(
            "SELECT status, count(*) AS n FROM sys_invocation WHERE scope = 'load' GROUP BY status"
        )
        counts = {r["status"]: r["n"] for r in rows}
        assert counts.get("running", 0) <= 3, counts
        seen_pending |= counts.get("pending", 0) > 0
        if counts.get("completed", 0) == 50:
            break
        time.sleep(0.1)
    stats = _stats(rt.ingress_url)
    assert stats["max"] <= 3, stats
    assert sorted(stats["entered"]) == list(range(50))  # nothing lost, nothing run twice
    assert seen_pending
    assert len(set(ids)) == 50
    # Arrival order, loosely: the first ten sent are among the first fifteen to start.
    assert set(range(10)) <= set(stats["entered"][:15]), stats["entered"]


def test_limit_key_levels_and_wildcards(flow: tuple[Runtime, Admin]) -> None:
    rt, admin = flow
    assert (
        _put(
            admin,
            [
                {"pattern": "lvl", "limits": {"concurrency": 3}},
                {"pattern": "lvl/*", "limits": {"concurrency": 1}},
            ],
        ).status_code
        == 200
    )
    for i in range(3):
        _send(rt.ingress_url, "lvl", 100 + i, 3000, "a")
    for i in range(2):
        _send(rt.ingress_url, "lvl", 200 + i, 3000, "b")
    for i in range(2):
        _send(rt.ingress_url, "lvl", 300 + i, 3000)

    def settled() -> dict[tuple[str | None, str], int]:
        rows = admin.query(
            "SELECT limit_key, status, count(*) AS n FROM sys_invocation WHERE scope = 'lvl' "
            "AND status IN ('running', 'pending') GROUP BY limit_key, status"
        )
        got = {(r.get("limit_key"), r["status"]): r["n"] for r in rows}
        assert got == {
            ("a", "running"): 1,
            ("a", "pending"): 2,
            ("b", "running"): 1,
            ("b", "pending"): 1,
            (None, "running"): 1,
            (None, "pending"): 1,
        }
        return got

    eventually(settled, timeout=10)
    # Raising the limits starts the waiting ones at once.
    _put(
        admin,
        [
            {"pattern": "lvl", "limits": {"concurrency": 10}},
            {"pattern": "lvl/*", "limits": {"concurrency": 10}},
        ],
    )

    def all_running() -> None:
        rows = admin.query("SELECT status FROM sys_invocation WHERE scope = 'lvl' AND status = 'pending'")
        assert rows == []

    eventually(all_running, timeout=10)


def test_suspended_invocations_do_not_hold_a_slot(
    runtime_factory: Callable[..., Runtime], app: ServiceApp
) -> None:
    rt = runtime_factory(dataclasses.replace(FLOW, inactivity_timeout="0s"), "flow-suspending")
    register_deployment(rt.admin_url, app.url)
    with Admin(rt.admin_url) as admin:
        assert _put(admin, [{"pattern": "naps", "limits": {"concurrency": 1}}]).status_code == 200
        for _ in range(3):
            r = httpx.post(f"{rt.ingress_url}/restate/scope/naps/send/Limited/nap", json=3000)
            assert r.status_code == 202, r.text

        def all_suspended() -> None:
            rows = admin.query("SELECT status FROM sys_invocation WHERE scope = 'naps'")
            assert [r["status"] for r in rows] == ["suspended"] * 3

        eventually(all_suspended, timeout=10, interval=0.05)

        def all_completed() -> None:
            rows = admin.query("SELECT status FROM sys_invocation WHERE scope = 'naps'")
            assert [r["status"] for r in rows] == ["completed"] * 3

        eventually(all_completed, timeout=20)


def test_a_failed_attempt_gives_its_slot_up_while_it_backs_off(
    runtime_factory: Callable[..., Runtime], app: ServiceApp
) -> None:
    """Under a limit of 1, an invocation whose attempt failed does not keep the scope's only slot through
    its back-off: another one runs meanwhile. While it waits it shows as `ready`, as a waiting one does."""
    config = dataclasses.replace(FLOW, retry_initial_interval="4s", retry_max_interval="4s")
    rt = runtime_factory(config, "flow-backoff")
    register_deployment(rt.admin_url, app.url)
    with Admin(rt.admin_url) as admin:
        assert _put(admin, [{"pattern": "bo", "limits": {"concurrency": 1}}]).status_code == 200
        httpx.post(f"{rt.ingress_url}/Limited/reset")
        scoped = f"{rt.ingress_url}/restate/scope/bo/send/Limited"
        r = httpx.post(f"{scoped}/flaky", json={"n": 1, "fails": 1})
        assert r.status_code == 202, r.text
        flaky_id = r.json()["invocationId"]
        eventually(lambda: _stats(rt.ingress_url)["entered"] == [1], timeout=10, interval=0.05)

        def status(iid: str) -> str:
            [row] = admin.query(f"SELECT status FROM sys_invocation WHERE id = '{iid}'")
            return str(row["status"])

        r = httpx.post(f"{scoped}/work", json={"n": 2, "ms": 1000})
        assert r.status_code == 202, r.text
        other_id = r.json()["invocationId"]
        eventually(lambda: status(other_id) == "running", timeout=3, interval=0.05)
        print("USER_LIMITS", admin.query("SELECT * FROM sys_user_limits"))
        assert status(flaky_id) == "ready"
        with httpx.Client(timeout=10) as client:
            r = client.get(f"{rt.ingress_url}/restate/invocation/{other_id}/attach")
        assert r.status_code == 200 and r.json() == 2, r.text
        with httpx.Client(timeout=15) as client:
            r = client.get(f"{rt.ingress_url}/restate/invocation/{flaky_id}/attach")
        assert r.status_code == 200 and r.json() == 1, r.text
        assert _stats(rt.ingress_url)["entered"] == [1, 2, 1]


def test_user_limits_show_usage_and_waiters_per_level(flow: tuple[Runtime, Admin]) -> None:
    rt, admin = flow
    rules = [
        {"pattern": "ul", "limits": {"concurrency": 3}},
        {"pattern": "ul/*", "limits": {"concurrency": 1}},
        {"pattern": "ul/a/*", "limits": {"concurrency": 1}},
    ]
    assert _put(admin, rules).status_code == 200
    ids = []
    for limit_key in ("a/b", "a/c", "x", "x", None):
        headers = {"x-restate-limit-key": limit_key} if limit_key else {}
        r = httpx.post(
            f"{rt.ingress_url}/restate/scope/ul/send/Limited/work", json={"n": 0, "ms": 3000}, headers=headers
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["invocationId"])

    def three_running() -> None:
        rows = admin.query(
            "SELECT status, count(*) AS n FROM sys_invocation WHERE scope = 'ul' GROUP BY status"
        )
        assert {r["status"]: r["n"] for r in rows} == {"running": 3, "pending": 2}

    eventually(three_running, timeout=10, interval=0.05)
    rows = admin.query(
        "SELECT scope, l1, l2, level, usage, concurrency_limit, rule_pattern, available, num_waiters "
        "FROM sys_user_limits WHERE scope = 'ul' ORDER BY level, l1, l2"
    )
    common = {"scope": "ul", "concurrency_limit": 1, "available": 0}
    assert rows == [
        {**common, "l1": "a", "level": "Level1", "usage": 1, "rule_pattern": "ul/*", "num_waiters": 1},
        {**common, "l1": "x", "level": "Level1", "usage": 1, "rule_pattern": "ul/*", "num_waiters": 1},
        {
            **common,
            "l1": "a",
            "l2": "b",
            "level": "Level2",
            "usage": 1,
            "rule_pattern": "ul/a/*",
            "num_waiters": 0,
        },
        {
            **common,
            "level": "Scope",
            "usage": 3,
            "concurrency_limit": 3,
            "rule_pattern": "ul",
            "num_waiters": 0,
        },
    ]
    for iid in ids:
        with httpx.Client(timeout=20) as client:
            assert client.get(f"{rt.ingress_url}/restate/invocation/{iid}/attach").status_code == 200
    assert admin.query("SELECT * FROM sys_user_limits WHERE scope = 'ul'") == []
