"""`pyrestate` CLI commands against a real `pyrestate server` (click's runner in-process; `dev` as a
process)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import HERE, Stack
from click.testing import CliRunner, Result

from pyrestate.cli.main import main
from pyrestate.testing import eventually, free_port


def cli(stack_or_url: Stack | str, *args: str) -> Result:
    url = stack_or_url if isinstance(stack_or_url, str) else stack_or_url.admin_url
    return CliRunner().invoke(main, [*args, "--admin-url", url], catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}"
    return result.stdout


def as_json(stack: Stack, *args: str) -> Any:
    return json.loads(ok(cli(stack, *args, "--json")))


def _waiting(stack: Stack, key: str) -> str:
    inv_id = stack.send(f"Waiter/{key}/wait")

    def check() -> None:
        rows = stack.query(f"SELECT status, journal_size FROM sys_invocation WHERE id = '{inv_id}'")
        assert rows and rows[0]["status"] in ("running", "suspended") and int(rows[0]["journal_size"]) >= 3

    eventually(check, timeout=15)
    return inv_id


def test_server_down_exits_3() -> None:
    r = cli(f"http://127.0.0.1:{free_port()}", "services", "list")
    assert r.exit_code == 3 and "cannot reach the admin API" in r.stderr


def test_usage_errors_exit_2(stack: Stack) -> None:
    assert cli(stack, "kv", "set", "Counter", "k", "count", "not json").exit_code == 2
    assert CliRunner().invoke(main, ["invocations", "cancel"]).exit_code == 2


def test_not_found_exits_4(stack: Stack) -> None:
    r = cli(stack, "services", "describe", "NoSuch")
    assert r.exit_code == 4 and "NoSuch" in r.stderr
    assert cli(stack, "invocations", "describe", "inv_1cttqfy89hGI02BhGFtVhXyJdSigAhlVVI").exit_code == 4


def test_deployments_and_services(stack: Stack) -> None:
    deps = as_json(stack, "deployments", "list")
    assert [d["id"] for d in deps] == [stack.deployment_id]
    assert stack.deployment_id in ok(cli(stack, "deployments", "list"))
    names = {s["name"] for s in as_json(stack, "services", "list")}
    assert names == {"Counter", "Greeter", "Waiter"}
    described = ok(cli(stack, "services", "describe", "Counter"))
    assert "VirtualObject" in described and "JSON integer" in described and stack.deployment_id in described
    assert as_json(stack, "services", "describe", "Counter")["deployment"]["id"] == stack.deployment_id


def test_services_status_counts(stack: Stack) -> None:
    stack.ingress.post("/Greeter/greet", json="a")
    stack.ingress.post("/Greeter/greet", json="b")
    status = as_json(stack, "services", "status", "Greeter")
    greet = next(s for s in status if s["handler"] == "greet")
    assert greet["counts"]["completed"] >= 2
    table = ok(cli(stack, "services", "status"))
    assert "COMPLETED" in table and "Greeter" in table and "greet" in table
    assert cli(stack, "services", "status", "NoSuch").exit_code == 4


def test_invocations_list_describe_cancel_purge(stack: Stack) -> None:
    inv_id = _waiting(stack, "ours1")
    listed = as_json(stack, "invocations", "list", "--service", "Waiter")
    assert inv_id in [r["id"] for r in listed]
    assert inv_id in ok(cli(stack, "invocations", "list"))
    described = ok(cli(stack, "invocations", "describe", inv_id))
    assert "Waiter/ours1/wait" in described
    # each entry with its append time and its value decoded (as the official CLI's "Invocation Progress")
    assert re.search(r"#0 \[\d{4}-\d\d-\d\dT[\d:.]+Z\] Command: Input", described), described
    expected = ('SetState key awakeable = "sign_1', "Command: Run [noted]", 'Notification: Run = "noted"')
    for line in expected:
        assert line in described, described
    journal = as_json(stack, "invocations", "describe", inv_id)["journal"]
    assert [e["index"] for e in journal][:3] == [0, 1, 2]
    assert all(e["appended_at"] for e in journal)
    values = {e["entry_type"]: e.get("value") for e in journal}
    assert values["Notification: Run"] == "noted" and str(values["Command: SetState"]).startswith("sign_1")

    out = ok(cli(stack, "invocations", "cancel", inv_id, "--wait"))
    assert "completed: [409] cancelled" in out
    done = as_json(stack, "invocations", "list", "--all", "--status", "completed", "--service", "Waiter")
    assert any(r["id"] == inv_id and r["completion_failure"] == "[409] cancelled" for r in done)
    assert inv_id not in ok(cli(stack, "invocations", "list"))

    assert cli(stack, "invocations", "purge", inv_id).exit_code == 0
    again = cli(stack, "invocations", "purge", inv_id)
    assert again.exit_code == 4 and "does not exist" in again.stderr


def test_invocations_pause_resume_kill(stack: Stack) -> None:
    inv_id = _waiting(stack, "ours2")
    ok(cli(stack, "invocations", "pause", inv_id))
    eventually(lambda: _assert_status(stack, inv_id, "paused"), timeout=15)
    assert inv_id in [r["id"] for r in as_json(stack, "invocations", "list", "--status", "paused")]
    ok(cli(stack, "invocations", "resume", inv_id))
    eventually(lambda: _assert_status(stack, inv_id, "running", "suspended"), timeout=15)
    result = as_json(stack, "invocations", "kill", inv_id, "--wait")
    assert result == [{"id": inv_id, "ok": True, "http_status": 200, "completion_failure": "[409] killed"}]
    busy = cli(stack, "invocations", "kill", inv_id)
    assert busy.exit_code == 1 and "already completed" in busy.stderr


def _assert_status(stack: Stack, inv_id: str, *expected: str) -> None:
    rows = stack.query(f"SELECT status FROM sys_invocation WHERE id = '{inv_id}'")
    assert rows and rows[0]["status"] in expected


def test_kv_get_set_clear(stack: Stack) -> None:
    assert stack.ingress.post("/Counter/kv2/add", json=5).json() == 5
    got = as_json(stack, "kv", "get", "Counter", "kv2")
    assert got["state"] == [{"key": "count", "value_utf8": "5", "value_hex": "35"}]
    ok(cli(stack, "kv", "set", "Counter", "kv2", "count", "41"))
    ok(cli(stack, "kv", "set", "Counter", "kv2", "note", '"hi"'))
    eventually(lambda: _assert_add(stack, "kv2", 42), timeout=10)
    table = ok(cli(stack, "kv", "get", "Counter", "kv2"))
    assert "count" in table and "42" in table and '"hi"' in table
    ok(cli(stack, "kv", "clear", "Counter", "kv2", "count"))
    assert [e["key"] for e in as_json(stack, "kv", "get", "Counter", "kv2")["state"]] == ["note"]
    ok(cli(stack, "kv", "clear", "Counter", "kv2", "-y"))
    assert as_json(stack, "kv", "get", "Counter", "kv2")["state"] == []
    assert cli(stack, "kv", "get", "Greeter", "x").exit_code == 2
    assert cli(stack, "kv", "clear", "Counter", "kv2", "nothing").exit_code == 4


def _assert_add(stack: Stack, key: str, expected: int) -> None:
    # `get` is shared and side-effect free, so retrying until the new state is visible is safe.
    assert stack.ingress.post(f"/Counter/{key}/get").json() == expected - 1
    assert stack.ingress.post(f"/Counter/{key}/add", json=1).json() == expected


def test_sql(stack: Stack) -> None:
    stack.ingress.post("/Counter/sql2/add", json=1)
    rows = as_json(
        stack, "sql", "SELECT target, status FROM sys_invocation WHERE target = 'Counter/sql2/add'"
    )
    assert rows == [{"target": "Counter/sql2/add", "status": "completed"}]
    assert "Counter/sql2/add" in ok(cli(stack, "sql", "SELECT target FROM sys_invocation"))
    bad = cli(stack, "sql", "SELEC 1")
    assert bad.exit_code == 1 and "ParserError" in bad.stderr


class _NoQuery(BaseHTTPRequestHandler):
    """An admin API from before SQL introspection: `/query` answers 501."""

    def do_POST(self) -> None:
        self.send_response(501)
        self.send_header("content-type", "application/json")
        body = b'{"message":"not implemented","restate_code":null}'
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def no_query_admin() -> Iterator[str]:
    httpd = HTTPServer(("127.0.0.1", 0), _NoQuery)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_query_501_gives_a_clear_message(no_query_admin: str) -> None:
    r = cli(no_query_admin, "invocations", "list")
    assert r.exit_code == 1 and "does not support SQL introspection" in r.stderr and "501" in r.stderr


def test_deployments_register_and_remove(fresh_stack: Stack) -> None:
    out = ok(cli(fresh_stack, "deployments", "register", fresh_stack.app.url))
    assert "registered" in out and "Counter" in out
    dep_id = as_json(fresh_stack, "deployments", "list")[0]["id"]
    again = ok(cli(fresh_stack, "deployments", "register", fresh_stack.app.url))
    assert "already registered" in again and dep_id in again
    removed = as_json(fresh_stack, "deployments", "remove", dep_id)
    assert removed["removed"] and set(removed["services"]) == {"Counter", "Greeter", "Waiter"}
    assert as_json(fresh_stack, "deployments", "list") == []
    assert cli(fresh_stack, "deployments", "remove", dep_id, "-y").exit_code == 4


def test_dev_starts_serves_registers_and_stops(tmp_path: Path) -> None:
    ingress, admin, app = free_port(), free_port(), free_port()
    log = tmp_path / "dev.out"
    env = dict(os.environ, COLUMNS="200")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyrestate.cli.main",
                "dev",
                "ops_app:app",
                "--ephemeral",
                "--ingress-port",
                str(ingress),
                "--admin-port",
                str(admin),
                "--app-port",
                str(app),
            ],
            cwd=HERE,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while "Ready." not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert f"curl http://127.0.0.1:{ingress}/Greeter/greet" in text
        r = httpx.post(f"http://127.0.0.1:{ingress}/Greeter/greet", json="dev", timeout=30)
        assert r.json() == "Hello dev!"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for port in (ingress, admin, app):  # everything it started is gone
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)


def test_invocations_restart_as_new(stack: Stack) -> None:
    first = stack.send("Greeter/greet", "ada")

    def completed() -> None:
        rows = stack.query(f"SELECT status FROM sys_invocation WHERE id = '{first}'")
        assert rows and rows[0]["status"] == "completed"

    eventually(completed, timeout=15)
    [result] = as_json(stack, "invocations", "restart-as-new", first, "--from", "0")
    assert result["ok"] is True and result["new_invocation_id"].startswith("inv_1")
    new_id = result["new_invocation_id"]
    rows = stack.query(f"SELECT restarted_from, invoked_by FROM sys_invocation WHERE id = '{new_id}'")
    assert rows == [{"restarted_from": first, "invoked_by": "restart_as_new"}]
    assert f"Restarted {first} as inv_" in ok(cli(stack, "invocations", "restart-as-new", first))
    beyond = cli(stack, "invocations", "restart-as-new", first, "--from", "99")
    assert beyond.exit_code == 1 and "without respective Completions" in beyond.stderr
