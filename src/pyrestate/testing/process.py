"""Child processes for integration tests: free ports, start/wait/stop by PID, log capture."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx


class ProcessError(RuntimeError):
    """A managed process died or never became ready; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it; a race with other binders is unlikely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until_answers(
    url: str,
    timeout: float = 30.0,
    alive: ManagedProcess | None = None,
    http2: bool = False,
) -> None:
    """Poll `url` until any HTTP response arrives (status is irrelevant, the listener is what matters)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    with httpx.Client(timeout=2.0, http1=not http2, http2=http2) as client:
        while time.monotonic() < deadline:
            if alive is not None and not alive.is_running():
                raise ProcessError(
                    f"{alive.name} exited with {alive.returncode} before {url} answered\n" + alive.log_tail()
                )
            try:
                client.get(url)
                return
            except httpx.TransportError as e:
                last = e
            time.sleep(0.05)
    tail = alive.log_tail() if alive is not None else ""
    raise ProcessError(f"{url} did not answer within {timeout}s ({last!r})\n{tail}")


class ManagedProcess:
    """One child process in its own process group, output appended to a log file.

    `stop_signal` is what a graceful stop sends first (SIGINT for hypercorn serving the official SDK,
    whose SIGTERM hook keeps the server alive); SIGKILL follows after `stop_timeout`.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout: float = 10.0,
        ready_url: str | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.ready_url = ready_url
        self.ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.is_running():
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        if self.ready_url is not None:
            try:
                wait_until_answers(self.ready_url, self.ready_timeout, alive=self)
            except BaseException:
                self.kill()
                raise

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        if sig == signal.SIGKILL:
            # The process leads its own session (start_new_session), so its group holds every child it
            # spawned, e.g. hypercorn's worker: a crash must take them all, or an orphan keeps serving.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)
            return
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, sig)

    def wait(self, timeout: float) -> int | None:
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: signal.Signals | None = None, timeout: float | None = None) -> int | None:
        """Graceful stop by PID, escalating to SIGKILL when the process outlives `timeout`."""
        if self._proc is None:
            return None
        self._signal(sig or self.stop_signal)
        if self.wait(self.stop_timeout if timeout is None else timeout) is None:
            self._signal(signal.SIGKILL)
            self._proc.wait()
        return self._proc.returncode

    def kill(self) -> int | None:
        """SIGKILL by PID (a crash, as far as the process is concerned)."""
        if self._proc is None:
            return None
        self._signal(signal.SIGKILL)
        self._proc.wait()
        return self._proc.returncode

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"[{self.name}: no log at {self.log_path}]"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"----- last {lines} lines of {self.log_path} -----\n{tail}"

    def __enter__(self) -> ManagedProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
