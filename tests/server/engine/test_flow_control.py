"""Flow control: the rule book (pure), and concurrency limits per scope on a real server (HTTP on loopback,
SQLite), across a kill -9 of the server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyrestate.server.flow_limits import (
    Delete,
    PatternError,
    PreconditionFailed,
    RuleBook,
    Upsert,
    counter_usage,
    fits,
    parse_pattern,
)
from pyrestate.testing import Admin, RuntimeConfig, ServiceApp, eventually, make_runtime, register_deployment

ROOT = Path(__file__).resolve().parents[3]

# ------------------------------------------------------------------------------------------------ rule book


def test_versions_follow_restate() -> None:
    book, [r] = RuleBook().upsert([Upsert("a", 2)], now_ms=10)
    assert (book.version, r.version, r.last_modified_ms) == (1, 1, 10)
    book, [r] = book.upsert([Upsert("a", 3)], now_ms=20)
    assert (book.version, r.version, r.last_modified_ms) == (2, 2, 20)
    book, [r] = book.upsert([Upsert("a", 3, "text")], now_ms=30)  # description only
    assert (book.version, r.version, r.last_modified_ms, r.description) == (3, 2, 20, "text")
    same, [r] = book.upsert([Upsert("a", 3, "text")], now_ms=40)  # nothing changes
    assert same is book and r.version == 2
    book, [b, c] = book.upsert([Upsert("b", 1), Upsert("c", None)], now_ms=50)
    assert (book.version, b.version, c.version) == (4, 4, 4)
    book, removed = book.delete([Delete("b"), Delete("absent")])
    assert (book.version, removed) == (5, ["b"])
    assert RuleBook.from_bytes(book.to_bytes()) == book


def test_preconditions_are_atomic() -> None:
    book, _ = RuleBook().upsert([Upsert("a", 1)], now_ms=1)
    failed = r"Matches\(v7\) for pattern a failed \(actual version: Some\(v1\)\)"
    with pytest.raises(PreconditionFailed, match=failed):
        book.upsert([Upsert("new", 1), Upsert("a", 2, precondition=("matches", 7))], now_ms=2)
    with pytest.raises(PreconditionFailed, match=r"DoesNotExist for pattern a failed"):
        book.upsert([Upsert("a", 2, precondition=("does_not_exist", None))], now_ms=2)
    with pytest.raises(PreconditionFailed, match=r"actual version: None"):
        book.delete([Delete("zz", expected_version=1)])
    assert set(book.rules) == {"a"}


def test_patterns() -> None:
    assert parse_pattern("s/*/*/") == "s/*/*"
    for bad, why in [
        ("", "pattern cannot be empty"),
        ("a/b/c/d", "too many path components"),
        ("a b", "outside the allowed set"),
        ("*a", "outside the allowed set"),
        ("x" * 37, "value too long: 37 bytes"),
    ]:
        with pytest.raises(PatternError, match=why):
            parse_pattern(bad)


def test_precedence_per_level_and_wildcards() -> None:
    book, _ = RuleBook().upsert(
        [
            Upsert("*", 5),
            Upsert("s", 3),
            Upsert("s/*", 2),
            Upsert("*/vip", 9),
            Upsert("s/*/*", 1),
            Upsert("open", None),  # shadows `*`: unlimited
            Upsert("off", 1, disabled=True),  # absent: `*` applies
        ],
        now_ms=1,
    )
    assert book.limits_for("s", None) == [(("s",), 3)]
    assert book.limits_for("s", "a") == [(("s",), 3), (("s", "a"), 2)]
    assert book.limits_for("t", "vip") == [(("t",), 5), (("t", "vip"), 9)]
    assert book.limits_for("s", "a/b") == [(("s",), 3), (("s", "a"), 2), (("s", "a", "b"), 1)]
    assert book.limits_for("open", "k") == []
    assert book.limits_for("off", None) == [(("off",), 5)]
    # Counting: a limit-key level counts only the invocations under it.
    assert fits(book, "s", "a", ["b", "b"])
    assert not fits(book, "s", "a", ["a", "a/x"])
    assert not fits(book, "s", None, ["a", "b", None])


def test_counter_usage_counts_waiters_where_they_are_blocked() -> None:
    book, _ = RuleBook().upsert([Upsert("s", 3), Upsert("s/*", 1), Upsert("s/a/*", 1), Upsert("t", None)], 1)
    rows = counter_usage(book, "s", running=["a/b", "x", None], waiting=["a/c", "x", "y"])
    assert [(c.counter, c.level, c.usage, c.limit, c.rule_pattern, c.waiters) for c in rows] == [
        (("s",), "Scope", 3, 3, "s", 1),  # "y" has room at s/y: the full scope holds it
        (("s", "a"), "Level1", 1, 1, "s/*", 1),
        (("s", "x"), "Level1", 1, 1, "s/*", 1),
        (("s", "a", "b"), "Level2", 1, 1, "s/a/*", 0),
    ]
    assert counter_usage(book, "t", running=[None, None], waiting=[]) == []  # unlimited: no counter


# ----------------------------------------------------------------------------------- kill -9 of the server


@pytest.fixture
def service() -> Iterator[ServiceApp]:
    app = ServiceApp(
        "conformance.services.app:app",
        env={"PYRESTATE_SDK": "pyrestate", "SERVICES": "Limited"},
        pythonpath=[ROOT],
        cwd=ROOT,
        name="limited",
    )
    app.start()
    try:
        yield app
    finally:
        app.close()


def _counts(admin: Admin) -> dict[str, int]:
    rows = admin.query(
        "SELECT status, count(*) AS n FROM sys_invocation WHERE scope = 'crash' GROUP BY status"
    )
    return {r["status"]: int(r["n"]) for r in rows}


def test_limits_and_waiting_invocations_survive_kill_9(service: ServiceApp, tmp_path: Path) -> None:
    config = RuntimeConfig(
        enable_protocol_v7=True, extra_env={"PYRESTATE_EXPERIMENTAL_ENABLE_VQUEUES": "true"}
    )
    rt = make_runtime("pyrestate", config, data_dir=tmp_path / "data", log_dir=tmp_path, name="flow")
    rt.start()
    try:
        register_deployment(rt.admin_url, service.url)
        with Admin(rt.admin_url) as admin:
            r = admin.client.put("/limits/rules", json=[{"pattern": "crash", "limits": {"concurrency": 3}}])
            assert r.status_code == 200
            ids = []
            for n in range(30):
                r = httpx.post(
                    f"{rt.ingress_url}/restate/scope/crash/send/Limited/work", json={"n": n, "ms": 300}
                )
                assert r.status_code == 202, r.text
                ids.append(r.json()["invocationId"])

            def some_done() -> dict[str, int]:
                counts = _counts(admin)
                assert counts.get("completed", 0) >= 3 and counts.get("pending", 0) >= 10, counts
                return counts

            eventually(some_done, timeout=30, interval=0.05)
        rt.kill()  # SIGKILL: no shutdown of any kind
        rt.start()
        with Admin(rt.admin_url) as admin:
            after = _counts(admin)
            assert after.get("pending", 0) > 0, after  # the waiting queue was stored
            assert [r["pattern"] for r in admin.query("SELECT pattern FROM sys_rules")] == ["crash"]
            deadline = time.monotonic() + 60
            counts: dict[str, Any] = {}
            while time.monotonic() < deadline:
                counts = _counts(admin)
                assert counts.get("running", 0) <= 3, counts
                if counts.get("completed", 0) == 30:
                    break
                time.sleep(0.05)
            assert counts == {"completed": 30}
            rows = admin.query("SELECT id FROM sys_invocation WHERE scope = 'crash'")
            assert sorted(r["id"] for r in rows) == sorted(ids)
        entered = httpx.post(f"{rt.ingress_url}/Limited/stats").json()["entered"]
        assert set(entered) == set(range(30))  # every one ran (those running at the kill ran again)
    finally:
        rt.close()
