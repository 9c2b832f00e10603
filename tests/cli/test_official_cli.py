"""The official `restate` CLI (npm @restatedev/restate 1.7.12) against a real `pyrestate server`.

Every command must exit 0 and print what it prints against the real Restate server
(tests/captures/cli-output.txt); the seeds' `inv list`, `inv cancel` and `kv get` steps run verbatim.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from cli_support import Stack

from pyrestate.testing import eventually

Run = Callable[..., subprocess.CompletedProcess[str]]


def ok(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p.stdout + p.stderr


def _running(stack: Stack, inv_id: str) -> None:
    # The handler has journaled its Run and now waits on an awakeable nobody resolves.
    def check() -> None:
        rows = stack.query(f"SELECT status, journal_size FROM sys_invocation WHERE id = '{inv_id}'")
        assert rows and rows[0]["status"] in ("running", "suspended") and int(rows[0]["journal_size"]) >= 3

    eventually(check, timeout=15)


def _status(stack: Stack, inv_id: str) -> dict[str, object]:
    rows = stack.query(f"SELECT status, completion_failure FROM sys_invocation WHERE id = '{inv_id}'")
    return rows[0] if rows else {}


def test_register_then_list_deployments_and_services(restate_cli: Run, fresh_stack: Stack) -> None:
    out = ok(restate_cli(fresh_stack, "deployments", "register", "-y", fresh_stack.app.url))
    assert "SERVICES THAT WILL BE ADDED" in out and "Deployment ID:" in out
    assert "Counter" in out and "Greeter" in out and "Waiter" in out
    listed = ok(restate_cli(fresh_stack, "deployments", "list"))
    assert f"{fresh_stack.app.url}/" in listed and "dp_" in listed
    assert "- Counter [1]" in listed and "- Waiter [1]" in listed
    services = ok(restate_cli(fresh_stack, "services", "list"))
    assert "virtual object" in services
    for name in ("Counter", "Greeter", "Waiter"):
        assert name in services
    # The same URI again: the dry run answers 200 and the CLI stops, suggesting --force.
    again = ok(restate_cli(fresh_stack, "deployments", "register", "-y", fresh_stack.app.url))
    assert "already exists" in again and "--force" in again


def test_services_describe(restate_cli: Run, stack: Stack) -> None:
    out = ok(restate_cli(stack, "services", "describe", "Counter"))
    assert "VirtualObject" in out and stack.deployment_id in out
    assert "Bidirectional Stream" in out and "restate-sdk-python/1.3.0" in out
    assert "add" in out and "JSON integer" in out


def test_services_status(restate_cli: Run, stack: Stack) -> None:
    stack.ingress.post("/Greeter/greet", json="status")
    out = ok(restate_cli(stack, "services", "status"))
    assert "Summary:" in out and "Greeter" in out and "greet" in out


def test_whoami(restate_cli: Run, stack: Stack) -> None:
    out = ok(restate_cli(stack, "whoami"))
    assert f"Admin Service '{stack.admin_url}/' is healthy" in out


def test_kv_get(restate_cli: Run, stack: Stack) -> None:
    assert stack.ingress.post("/Counter/kv1/add", json=17).json() == 17
    out = ok(restate_cli(stack, "kv", "get", "Counter", "kv1"))
    assert "count" in out and "17" in out and "kv1" in out


def test_sql(restate_cli: Run, stack: Stack) -> None:
    stack.ingress.post("/Counter/sql1/add", json=1)
    out = ok(
        restate_cli(
            stack, "sql", "SELECT target, status FROM sys_invocation WHERE target = 'Counter/sql1/add'"
        )
    )
    assert "Counter/sql1/add" in out and "completed" in out and "1 rows" in out


def test_invocations_list_describe_cancel(restate_cli: Run, stack: Stack) -> None:
    inv_id = stack.send("Waiter/cancel1/wait")
    _running(stack, inv_id)
    listed = ok(restate_cli(stack, "inv", "list"))  # the seeds use the `inv` alias
    assert inv_id in listed and "Waiter/cancel1/wait" in listed and "Showing" in listed
    described = ok(restate_cli(stack, "invocations", "describe", inv_id))
    assert "Invocation Progress:" in described and "Waiter/cancel1/wait" in described
    assert "Command: Input" in described and "Command: Run [noted]" in described
    cancelled = ok(restate_cli(stack, "-y", "inv", "cancel", inv_id))
    assert "Cancelled 1 invocations" in cancelled
    eventually(lambda: _assert_failure(stack, inv_id, "[409] cancelled"), timeout=15)
    all_listed = ok(restate_cli(stack, "invocations", "list", "--all"))
    assert inv_id in all_listed and "completed with failure" in all_listed


def _assert_failure(stack: Stack, inv_id: str, failure: str) -> None:
    row = _status(stack, inv_id)
    assert row.get("status") == "completed" and row.get("completion_failure") == failure, row


def test_invocations_pause_resume_kill_purge(restate_cli: Run, stack: Stack) -> None:
    inv_id = stack.send("Waiter/kill1/wait")
    _running(stack, inv_id)
    assert "Paused 1 invocations" in ok(restate_cli(stack, "-y", "invocations", "pause", inv_id))
    eventually(lambda: _assert_status(stack, inv_id, "paused"), timeout=15)
    assert "Resumed 1 invocations" in ok(restate_cli(stack, "-y", "invocations", "resume", inv_id))
    eventually(lambda: _assert_status(stack, inv_id, "running", "suspended"), timeout=15)
    assert "Killed 1 invocations" in ok(restate_cli(stack, "-y", "invocations", "kill", inv_id))
    eventually(lambda: _assert_failure(stack, inv_id, "[409] killed"), timeout=15)
    assert "Purged 1 invocations" in ok(restate_cli(stack, "-y", "invocations", "purge", inv_id))
    eventually(lambda: _assert_gone(stack, inv_id), timeout=15)


def _assert_status(stack: Stack, inv_id: str, *expected: str) -> None:
    assert _status(stack, inv_id).get("status") in expected


def _assert_gone(stack: Stack, inv_id: str) -> None:
    assert _status(stack, inv_id) == {}


def test_state_clear(restate_cli: Run, stack: Stack) -> None:
    stack.ingress.post("/Counter/clear1/add", json=3)
    ok(restate_cli(stack, "-y", "state", "clear", "Counter/clear1"))
    eventually(lambda: _assert_count(stack, "clear1", 0), timeout=10)


def _assert_count(stack: Stack, key: str, expected: int) -> None:
    assert stack.ingress.post(f"/Counter/{key}/get").json() == expected


def test_invocations_restart_as_new_by_target(restate_cli: Run, fresh_stack: Stack) -> None:
    """The official CLI restarts every invocation matching a target, one PATCH each (its batch)."""
    ok(restate_cli(fresh_stack, "deployments", "register", "-y", fresh_stack.app.url))
    first, second = fresh_stack.send("Greeter/greet", "a"), fresh_stack.send("Greeter/greet", "b")
    eventually(lambda: _assert_status(fresh_stack, first, "completed"), timeout=15)
    eventually(lambda: _assert_status(fresh_stack, second, "completed"), timeout=15)
    out = ok(restate_cli(fresh_stack, "-y", "invocations", "restart-as-new", "Greeter/greet"))
    assert "Restarted 2 invocations" in out and first in out and second in out
    rows = fresh_stack.query("SELECT restarted_from FROM sys_invocation WHERE invoked_by = 'restart_as_new'")
    assert sorted(str(r["restarted_from"]) for r in rows) == sorted([first, second])


def test_rules_set_list_disable_enable_delete(restate_cli: Run, stack: Stack) -> None:
    def rule() -> list[dict[str, object]]:
        return stack.query(
            "SELECT pattern, concurrency, description, disabled FROM sys_rules WHERE pattern = 'cl1'"
        )

    ok(restate_cli(stack, "rules", "set", "cl1", "--concurrency", "2", "--description", "from the cli"))
    assert rule() == [{"pattern": "cl1", "concurrency": 2, "description": "from the cli", "disabled": False}]
    listed = ok(restate_cli(stack, "rules", "list"))
    assert listed.split() == ["PATTERN", "CONCURRENCY", "DISABLED", "cl1", "2", "no"]
    ok(restate_cli(stack, "rules", "disable", "cl1"))
    assert rule()[0]["disabled"] is True
    ok(restate_cli(stack, "rules", "enable", "cl1"))
    assert rule()[0]["disabled"] is False
    ok(restate_cli(stack, "rules", "set", "cl1", "--unlimited"))
    assert "concurrency" not in rule()[0]  # null columns are left out of JSON rows
    ok(restate_cli(stack, "rules", "delete", "-y", "cl1"))
    assert rule() == []
