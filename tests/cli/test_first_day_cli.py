"""A new user's mistakes get clear answers: malformed vs unknown ids, unknown statuses, bad SQL, `pyrestate
dev` with busy ports or a broken app; help that is read whole; hints that run as printed."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cli_support import HERE, Stack
from click.testing import CliRunner, Result

from pyrestate.cli.dev import curl_hint, example_value
from pyrestate.cli.main import main
from pyrestate.testing import free_port

UNKNOWN_ID = "inv_1bMIT1NnefFm0bAAQWU8EsC7CXdfyfB3mx"  # well-formed, never created


def cli(stack: Stack, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--admin-url", stack.admin_url], catch_exceptions=False)


@pytest.mark.parametrize("verb", ["describe", "kill", "cancel", "pause", "resume", "purge"])
def test_malformed_id_is_a_usage_error_unknown_id_is_not_found(stack: Stack, verb: str) -> None:
    bad = cli(stack, "invocations", verb, "inv_oops")
    assert bad.exit_code == 2, bad.output
    assert "invalid invocation id 'inv_oops'" in bad.stderr and "ids look like inv_1" in bad.stderr
    unknown = cli(stack, "invocations", verb, UNKNOWN_ID)
    assert unknown.exit_code == 4, unknown.output
    assert f"'{UNKNOWN_ID}' does not exist" in unknown.stderr


def test_unknown_status_is_an_error(stack: Stack) -> None:
    r = cli(stack, "invocations", "list", "--status", "runing")
    assert r.exit_code == 2
    assert "'runing' is not one of" in r.stderr and "'backing-off'" in r.stderr
    assert cli(stack, "invocations", "list", "--status", "Completed").exit_code == 0


def test_sql_user_errors_are_400_as_on_the_official_server(stack: Stack) -> None:
    # Measured on restate-server 1.7.12: a statement that does not parse is 400, planning errors are 500,
    # both `{"message": "Datafusion error: …"}`.
    r = httpx.post(
        f"{stack.admin_url}/query",
        json={"query": "SELEC 1"},
        headers={"accept": "application/json"},
        timeout=10,
    )
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert r.json() == {
        "message": 'Datafusion error: SQL error: ParserError("Expected: an SQL statement, found: SELEC '
        'at Line: 1, Column: 1")'
    }
    r = httpx.post(f"{stack.admin_url}/query", json={"query": "SELECT * FROM nosuch"}, timeout=10)
    assert r.status_code == 500
    assert r.json() == {
        "message": "Datafusion error: Error during planning: table 'restate.public.nosuch' not found"
    }
    out = cli(stack, "sql", "SELEC 1")
    assert out.exit_code == 1
    assert "query failed (HTTP 400): Datafusion error: SQL error: ParserError" in out.stderr


def test_help_is_whole_and_shows_option_types() -> None:
    top = CliRunner().invoke(main, ["--help"], terminal_width=80).output
    commands = top.split("Commands:")[1]
    assert "..." not in commands.replace("restate.app(...)", "")
    assert "Serve an SDK ASGI app (e.g. `restate.app(...)`) with hypercorn, HTTP/1.1 and h2c." in " ".join(
        top.split()
    )
    inv = CliRunner().invoke(main, ["invocations", "--help"]).output.split("Commands:")[1]
    assert "..." not in inv
    server = " ".join(CliRunner().invoke(main, ["server", "--help"]).output.split())
    for shown in (
        "--data-dir PATH",
        "--ingress-bind HOST:PORT",
        "--partitions INTEGER",
        "--retry-initial-interval DURATION",
        "--retry-on-max-attempts [pause|kill]",
        "--log-format [text|json]",
        "--max-request-body SIZE",
    ):
        assert shown in server, shown
    assert "VALUE" not in server
    listing = CliRunner().invoke(main, ["invocations", "list", "--help"]).output
    assert "--status [pending|scheduled|ready|running|backing-off|suspended|paused|completed]" in listing
    assert "--limit INTEGER" in listing


def _dev(tmp_path: Path, *args: str, app: str = "first_day_app:app") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pyrestate.cli.main", "dev", app, "--data-dir", str(tmp_path / "d"), *args],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, COLUMNS="200"),
        start_new_session=True,
    )


def _ports(ingress: int | None = None) -> list[str]:
    return [
        *("--ingress-port", str(ingress or free_port())),
        *("--admin-port", str(free_port())),
        *("--app-port", str(free_port())),
    ]


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("no_such_module:app", "error: no module named 'no_such_module'"),
        ("first_day_app:nope", "error: module 'first_day_app' has no attribute 'nope'"),
        (
            "broken_app:app",
            "error: importing 'broken_app' failed: RuntimeError: missing setting (broken_app.py:",
        ),
        ("first_day_app", "error: expected MODULE:APP (e.g. app:app), got 'first_day_app'"),
    ],
)
def test_dev_bad_app_is_one_line(tmp_path: Path, app: str, message: str) -> None:
    proc = _dev(tmp_path, *_ports(), app=app)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), err.decode()
    assert not (tmp_path / "d").exists()  # nothing was started


@pytest.mark.parametrize("which", ["ingress", "admin", "app"])
def test_dev_busy_port_is_one_line_and_touches_nothing(tmp_path: Path, which: str) -> None:
    ports = {"ingress": free_port(), "admin": free_port(), "app": free_port()}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports[which]))
        busy.listen()
        proc = _dev(tmp_path, *(a for name, p in ports.items() for a in (f"--{name}-port", str(p))))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.decode().splitlines() == [
        f"error: port {ports[which]} ({which}) is already in use on 127.0.0.1: "
        f"stop what listens there or pass --{which}-port"
    ]
    assert "Ready." not in out.decode()
    assert not (tmp_path / "d").exists()


def test_dev_hints_paste_as_printed(tmp_path: Path) -> None:
    ingress = free_port()
    proc = _dev(tmp_path, *_ports(ingress))
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not any(ln.startswith("Inspect with") for ln in lines):
            assert time.monotonic() < deadline and proc.poll() is None, lines
            lines.append(proc.stdout.readline().decode().rstrip("\n"))
        hints = [ln.strip() for ln in lines if ln.strip().startswith("curl ")]
        assert f"curl http://127.0.0.1:{ingress}/Cart/my-key/add --json " in "\n".join(hints)
        for hint in hints:
            if "/Failer/" in hint or "/Sleepy/" in hint:
                continue  # they fail on purpose or wait
            # Run exactly as printed, through a shell; curl exits 22 on an HTTP error with --fail.
            argv = [*shlex.split(hint), "--fail", "--silent", "--show-error", "--max-time", "30"]
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            assert r.returncode == 0, (hint, r.stdout, r.stderr)
        cart = next(h for h in hints if "/Cart/my-key/add" in h)
        shell = subprocess.run(
            ["sh", "-c", cart + " --fail --silent"], capture_output=True, text=True, timeout=60, check=False
        )
        assert shell.returncode == 0 and shell.stdout.strip() == "2", shell
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)


def test_example_values_follow_the_schema() -> None:
    schema = {
        "$defs": {
            "Item": {"type": "object", "properties": {"n": {"type": "integer"}, "s": {"type": "string"}}}
        },
        "anyOf": [{"$ref": "#/$defs/Item"}, {"type": "null"}],
    }
    assert example_value(schema) == {"n": 1, "s": "hello"}
    assert example_value({"type": "string", "enum": ["a'b"]}) == "a'b"
    svc = {"name": "Cart", "ty": "VirtualObject"}
    handler = {"name": "add", "input_json_schema": {"type": "string", "default": "it's"}}
    hint = curl_hint("http://127.0.0.1:8080", svc, handler)
    assert shlex.split(hint) == ["curl", "http://127.0.0.1:8080/Cart/my-key/add", "--json", '"it\'s"']
    no_input = {"name": "h", "input_description": "none"}
    assert curl_hint("http://h", {"name": "S", "ty": "Service"}, no_input) == "curl http://h/S/h"


def test_serve_bad_module_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pyrestate.cli.main", "serve", "no_such_module:app"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"error: no module named 'no_such_module' (looked in {HERE})"]
