"""Real peers for the invoker transport tests: hypercorn child processes on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Peer:
    """hypercorn serving `app_path` (file.py:app); stopped with SIGINT (the official SDK ignores SIGTERM)."""

    def __init__(self, app_path: str, tmp: Path, **settings: float | int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # workers = 0 serves in this very process: no multiprocessing child to orphan when it is killed.
        config = {"bind": [f"127.0.0.1:{self.port}"], "graceful_timeout": 1, "workers": 0, **settings}
        lines = []
        for key, value in config.items():
            if isinstance(value, list):
                lines.append(f"{key} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in value)}]")
            else:
                lines.append(f"{key} = {value}")
        cfg = tmp / f"hypercorn-{self.port}.toml"
        cfg.write_text("\n".join(lines) + "\n")
        self.log = tmp / f"hypercorn-{self.port}.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hypercorn", "-c", str(cfg), app_path],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=str(HERE),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hypercorn exited early: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("hypercorn did not start listening") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_file.close()


@pytest.fixture(scope="module")
def echo_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    peer = Peer(
        str(HERE / "echo_app.py") + ":app",
        tmp_path_factory.mktemp("echo"),
        keep_alive_timeout=3600,
        keep_alive_max_requests=1_000_000_000,
        h2_max_concurrent_streams=16,
    )
    yield peer
    peer.stop()


@pytest.fixture
def short_lived_peer(tmp_path: Path) -> Iterator[Peer]:
    """Closes idle connections after 0.5 s and h2 connections after 3 requests (hypercorn's own limits)."""
    peer = Peer(
        str(HERE / "echo_app.py") + ":app",
        tmp_path,
        keep_alive_timeout=0.5,
        keep_alive_max_requests=3,
    )
    yield peer
    peer.stop()


@pytest.fixture
def doomed_peer(tmp_path: Path) -> Iterator[Peer]:
    peer = Peer(str(HERE / "echo_app.py") + ":app", tmp_path, keep_alive_timeout=3600)
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def sdk_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    peer = Peer(
        str(HERE / "sdk_app.py") + ":app",
        tmp_path_factory.mktemp("sdk"),
        keep_alive_timeout=3600,
        keep_alive_max_requests=1_000_000_000,
    )
    yield peer
    peer.stop()
