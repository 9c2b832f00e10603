"""Serve a Python ASGI app (`module:attr`) with hypercorn on a free loopback port, h2c and HTTP/1.1."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyrestate.testing.process import ManagedProcess, free_port

# hypercorn closes an HTTP/2 connection after 1000 requests or 5 s idle by default; Restate keeps long-lived
# pooled connections to a deployment, and cutting them turns into spurious invocation retries.
HYPERCORN_CONFIG = """\
keep_alive_timeout = 3600
keep_alive_max_requests = 1000000000
graceful_timeout = 1
# Serve in the started process itself (no worker child), so a kill -9 of its PID is a real crash.
workers = 0
"""


class ServiceApp:
    """A hypercorn process serving `app_ref`; the port is fixed at construction so restarts keep the URI.

    The official SDK installs a SIGTERM hook that keeps hypercorn alive, so a graceful stop sends SIGINT.
    """

    def __init__(
        self,
        app_ref: str,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        name: str = "service-app",
        port: int | None = None,
        pythonpath: Sequence[Path] = (),
        cwd: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.app_ref = app_ref
        self.port = port or free_port()
        self._tmp = Path(tempfile.mkdtemp(prefix="svc-"))
        log_dir = log_dir or self._tmp
        config_path = self._tmp / "hypercorn.toml"
        config_path.write_text(HYPERCORN_CONFIG)
        full_env = dict(os.environ)
        if pythonpath:
            parts = [str(p) for p in pythonpath]
            if full_env.get("PYTHONPATH"):
                parts.append(full_env["PYTHONPATH"])
            full_env["PYTHONPATH"] = os.pathsep.join(parts)
        full_env.update(env or {})
        self.process = ManagedProcess(
            name,
            [
                python,
                "-m",
                "hypercorn",
                "--config",
                str(config_path),
                "--bind",
                f"127.0.0.1:{self.port}",
                app_ref,
            ],
            log_dir / f"{name}.log",
            env=full_env,
            cwd=cwd,
            stop_signal=signal.SIGINT,
            stop_timeout=5.0,
            ready_url=f"{self.url}/health",
            ready_timeout=30.0,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def restart(self, hard: bool = False) -> None:
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        return self.process.log_tail(lines)

    def close(self) -> None:
        """Stop and remove the scratch dir (hypercorn config, and the log unless log_dir was given)."""
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> ServiceApp:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
