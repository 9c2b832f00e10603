"""`make run` end to end: `pyrestate dev examples.all:app` serves every example and its curl commands work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import examples.all
from examples._harness import ROOT
from examples.conftest import RUNTIME_KIND
from pyrestate.testing import eventually, free_port

only_on_pyrestate = pytest.mark.skipif(RUNTIME_KIND != "pyrestate",
                                       reason="`pyrestate dev` runs pyrestate's server")


def test_every_example_is_served_by_the_combined_app() -> None:
    with_app = sorted(p.parent.name for p in Path(ROOT, "examples").glob("*/app.py"))
    assert sorted(examples.all.EXAMPLES) == with_app
    names = [svc.name for services in examples.all.SERVICES.values() for svc in services]
    assert len(names) == len(set(names)) and all(examples.all.SERVICES.values())


class DevProcess:
    def __init__(self, ports: dict[str, int], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyrestate.cli.main", "dev", "examples.all:app", "--ephemeral",
             *(a for name, port in ports.items() for a in (f"--{name}-port", str(port)))],
            cwd=ROOT, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not any("Ctrl-C stops everything" in line for line in self.lines):
            assert self.proc.poll() is None, "\n".join(self.lines)
            assert time.monotonic() < deadline, "\n".join(self.lines)
            time.sleep(0.1)

    def curl_commands(self) -> list[str]:
        return [line.strip() for line in self.lines if line.startswith("  curl ")]


def run_curl(command: str) -> tuple[int, str]:
    out = subprocess.run(["bash", "-c", f"{command} -s -w '\\n%{{http_code}}'"], capture_output=True,
                         text=True, timeout=60, check=False).stdout
    body, _, code = out.rpartition("\n")
    return int(code), body


@only_on_pyrestate
def test_make_run_serves_registers_and_prints_working_curl_commands() -> None:
    ports = {"ingress": free_port(), "admin": free_port(), "app": free_port()}
    # Short stand-in delays: the commands are the printed ones, only the waiting is cut.
    fast = {"TRANSITION_SECONDS": "0.2", "SUBTASK_SECONDS": "0.2", "UPLOAD_SECONDS": "0.2",
            "RESTAURANT_PREPARATION_SECONDS": "0.2"}
    dev = DevProcess(ports, fast)
    try:
        dev.wait_ready()
        commands = dev.curl_commands()
        assert len(commands) == len(examples.all.CURL_EXAMPLES)
        assert all(f"127.0.0.1:{ports['ingress']}" in c or f"127.0.0.1:{ports['app']}" in c for c in commands)
        results: dict[str, tuple[int, str]] = {}
        for command in commands:  # in the printed order: a send comes before the command that uses it
            # The task is delayed by 10 s: ask for its output (not ready yet) instead of waiting on it.
            results[command] = run_curl(command.replace("/attach", "/output"))
        for command, (code, body) in results.items():
            allowed = {470} if "/attach" in command else {500} if "BookingWorkflow" in command else {200, 202}
            assert code in allowed, f"{command} -> {code} {body}"

        def result_of(fragment: str) -> str:
            return next(body for command, (_, body) in results.items() if fragment in command)

        assert result_of("/reserve/") == "true"
        assert result_of("/worker/run") == (
            '"get out of bed: DONE,shower: DONE,make coffee: DONE,have breakfast: DONE"')
        assert "This payment could not be accepted!" in result_of("BookingWorkflow")
        assert '"status":"Accepted"' in result_of("/taskWorker/runTask/send")
        # The payment provider answers a card at once and a bank transfer by its webhook.
        assert json.loads(result_of('"card"'))["answer"] == "synchronous"
        assert json.loads(result_of('"bank_transfer"'))["answer"] == "webhook"
        # The food order was sent: it reaches DELIVERED (payment, timer, restaurant callback, delivery).
        status = next(c for c in commands if "getStatus" in c)
        eventually(lambda: _assert_equal(run_curl(status), (200, '"DELIVERED"')), timeout=20, interval=0.2)
    finally:
        dev.proc.send_signal(signal.SIGINT)
        code = dev.proc.wait(30)
    assert code == 0, "\n".join(dev.lines)
    assert any(line.startswith("Stopping: ") for line in dev.lines), "\n".join(dev.lines)
    for port in ports.values():
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected, actual
