"""Test-side helpers of the examples: effect logs, SDK deployments, client processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrestate.testing import Admin, AppProcess, Ingress, eventually

ROOT = Path(__file__).resolve().parent.parent




class Effects:
    """The lines the example's stand-in external systems appended (see examples/effects.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines()

    def matching(self, needle: str) -> list[str]:
        return [line for line in self.lines() if needle in line]

    def count(self, line: str) -> int:
        return self.lines().count(line)

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if predicate(lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"effects never satisfied the condition; got {lines}")
            time.sleep(0.05)

    def wait_for_line(self, line: str, timeout: float = 20.0) -> list[str]:
        return self.wait_for(lambda lines: line in lines, timeout)


@dataclass
class Deployment:
    """One example's SDK process, registered with the session runtime."""

    app: AppProcess
    effects: Effects
    control_dir: Path
    ingress: Ingress
    admin: Admin
    extra: dict[str, Any] = field(default_factory=dict)

    def wait_for_rows(self, sql: str, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll the runtime's `/query` until `sql` returns `count` rows: the recorded fact a crash or a
        check must come after (a journaled Sleep command, a stored listener, ...)."""

        def check() -> list[dict[str, Any]]:
            rows = self.admin.query(sql)
            assert len(rows) == count, rows
            return rows

        return eventually(check, timeout)

    def arm_crash(self, point: str) -> None:
        """The process exits (like a crash) the next time it reaches `maybe_crash(point)`."""
        (self.control_dir / f"crash-{point}").touch()

    def kill(self) -> None:
        self.app.kill()

    def start(self) -> None:
        self.app.start()

    def restart_after_crash(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.app.process.is_running():
            if time.monotonic() > deadline:
                raise AssertionError("the SDK process was expected to crash but is still running")
            time.sleep(0.05)
        self.app.start()


def run_client(module: str, *args: str, env: Mapping[str, str] | None = None,
               timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `python -m examples.<module> args...` as a separate process (another client of Restate)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", f"examples.{module}", *args], env=full_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def start_client(module: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", f"examples.{module}", *args], env=full_env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# The `deploy` fixture: deploy(example, module="app", env=None, register=True) -> Deployment
DeployFn = Callable[..., Deployment]
