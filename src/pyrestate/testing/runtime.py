"""Runtimes under test: the official restate-server binary and pyrestate's own server.

Both expose the same surface (ingress_url, admin_url, start/stop/kill/restart on the same data dir and
ports), so scenarios choose an implementation through one factory and never look at which one runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pyrestate.testing.process import ManagedProcess, free_port

RuntimeKind = Literal["official", "pyrestate"]

_SERVER_REL = ".cache/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"


@dataclass(frozen=True)
class RuntimeConfig:
    """Implementation-neutral server settings; each runtime maps them onto its own configuration.

    Durations use Restate's friendly format ("0s", "500ms", "1m").
    """

    inactivity_timeout: str | None = None
    abort_timeout: str | None = None
    retry_initial_interval: str | None = None
    retry_max_attempts: int | None = None
    retry_on_max_attempts: Literal["pause", "kill"] | None = None
    retry_max_interval: str | None = None
    disable_eager_state: bool = False
    # Offer service protocol V7 (Restate 1.7: experimental, on new clusters only).
    enable_protocol_v7: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)


class RuntimeUnderTest(Protocol):
    kind: RuntimeKind
    data_dir: Path

    @property
    def ingress_url(self) -> str: ...

    @property
    def admin_url(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def kill(self) -> None: ...

    def restart(self, hard: bool = False) -> None: ...

    def log_tail(self, lines: int = 60) -> str: ...


def find_project_root(start: Path | None = None) -> Path | None:
    """The nearest ancestor holding pyproject.toml (the checkout root, where .cache/ lives)."""
    for p in [start or Path.cwd(), *(start or Path.cwd()).parents]:
        if (p / "pyproject.toml").is_file():
            return p
    here = Path(__file__).resolve()
    for p in here.parents:
        if (p / "pyproject.toml").is_file():
            return p
    return None


def find_restate_server() -> str:
    """RESTATE_SERVER_BIN, else the npm-installed binary under .cache/, else `restate-server` on PATH."""
    explicit = os.environ.get("RESTATE_SERVER_BIN")
    if explicit:
        return explicit
    root = find_project_root()
    if root is not None and (root / _SERVER_REL).is_file():
        return str(root / _SERVER_REL)
    found = shutil.which("restate-server")
    if found:
        return found
    raise FileNotFoundError(
        "restate-server not found: set RESTATE_SERVER_BIN or install it under .cache/restate"
    )


class _ProcessRuntime:
    """Shared plumbing: fixed ports and data dir chosen once, so restarts reuse both."""

    kind: RuntimeKind

    def __init__(self, data_dir: Path | None, log_dir: Path | None, name: str) -> None:
        self._own_tmp = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="rt-")) if data_dir is None else data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = (log_dir or self.data_dir) / f"{name}.log"
        self.ingress_port = free_port()
        self.admin_port = free_port()
        self.process: ManagedProcess

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

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
        self.process.stop()
        if self._own_tmp:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> _ProcessRuntime:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OfficialRestateServer(_ProcessRuntime):
    """The official restate-server, loopback only, every listener on its own free port."""

    kind: RuntimeKind = "official"

    def __init__(
        self,
        config: RuntimeConfig | None = None,
        data_dir: Path | None = None,
        log_dir: Path | None = None,
        binary: str | None = None,
        name: str = "restate-server",
    ) -> None:
        super().__init__(data_dir, log_dir, name)
        self.config = config or RuntimeConfig()
        self.fabric_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTATE_")}
        env.update(self._env())
        self.process = ManagedProcess(
            name,
            [binary or find_restate_server(), "--no-logo"],
            self.log_path,
            env=env,
            cwd=self.data_dir,
            stop_signal=signal.SIGTERM,
            stop_timeout=15.0,
            # /restate/health answers only once the worker role serves; admin /health comes earlier.
            ready_url=f"{self.ingress_url}/restate/health",
            ready_timeout=60.0,
        )

    def _env(self) -> dict[str, str]:
        c = self.config
        env = {
            "RESTATE_BASE_DIR": str(self.data_dir),
            "RESTATE_NODE_NAME": "n1",
            "RESTATE_BIND_IP": "127.0.0.1",
            "RESTATE_ADVERTISED_HOST": "127.0.0.1",
            "RESTATE_BIND_PORT": str(self.fabric_port),
            "RESTATE_INGRESS__BIND_PORT": str(self.ingress_port),
            "RESTATE_ADMIN__BIND_PORT": str(self.admin_port),
            # Unix sockets live in the temp data dir; TCP is what the tests use.
            "RESTATE_LISTEN_MODE": "all",
            "RESTATE_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
            "RESTATE_SHUTDOWN_TIMEOUT": "10s",
            # Fewer partitions and a smaller RocksDB budget: several servers share a 2-core CI box.
            "RESTATE_DEFAULT_NUM_PARTITIONS": "4",
            "RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE": "512MiB",
        }
        if c.inactivity_timeout is not None:
            env["RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT"] = c.inactivity_timeout
        if c.abort_timeout is not None:
            env["RESTATE_WORKER__INVOKER__ABORT_TIMEOUT"] = c.abort_timeout
        if c.retry_initial_interval is not None:
            env["RESTATE_DEFAULT_RETRY_POLICY__INITIAL_INTERVAL"] = c.retry_initial_interval
        if c.retry_max_attempts is not None:
            env["RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS"] = str(c.retry_max_attempts)
        if c.retry_on_max_attempts is not None:
            env["RESTATE_DEFAULT_RETRY_POLICY__ON_MAX_ATTEMPTS"] = c.retry_on_max_attempts
        if c.retry_max_interval is not None:
            env["RESTATE_DEFAULT_RETRY_POLICY__MAX_INTERVAL"] = c.retry_max_interval
        if c.disable_eager_state:
            env["RESTATE_WORKER__INVOKER__DISABLE_EAGER_STATE"] = "true"
        if c.enable_protocol_v7:
            env["RESTATE_EXPERIMENTAL_ENABLE_PROTOCOL_V7"] = "true"
        env.update(c.extra_env)
        return env


class PyrestateServer(_ProcessRuntime):
    """pyrestate's own server (`pyrestate server`), configured through flags and PYRESTATE_* env vars."""

    kind: RuntimeKind = "pyrestate"

    def __init__(
        self,
        config: RuntimeConfig | None = None,
        data_dir: Path | None = None,
        log_dir: Path | None = None,
        name: str = "pyrestate-server",
    ) -> None:
        super().__init__(data_dir, log_dir, name)
        self.config = config or RuntimeConfig()
        env = dict(os.environ)
        env.update(self._env())
        self.process = ManagedProcess(
            name,
            [
                sys.executable, "-c", "from pyrestate.cli.main import main; main()", "server",
                "--data-dir", str(self.data_dir / "data"),
                "--ingress-bind", f"127.0.0.1:{self.ingress_port}",
                "--admin-bind", f"127.0.0.1:{self.admin_port}",
            ],
            self.log_path,
            env=env,
            cwd=self.data_dir,
            stop_signal=signal.SIGTERM,
            stop_timeout=10.0,
            ready_url=f"{self.ingress_url}/restate/health",
            ready_timeout=30.0,
        )

    def _env(self) -> dict[str, str]:
        # The names below are the contract the pyrestate server is expected to honour.
        c = self.config
        env: dict[str, str] = {"PYRESTATE_PARTITIONS": "4"}
        if c.inactivity_timeout is not None:
            env["PYRESTATE_INACTIVITY_TIMEOUT"] = c.inactivity_timeout
        if c.abort_timeout is not None:
            env["PYRESTATE_ABORT_TIMEOUT"] = c.abort_timeout
        if c.retry_initial_interval is not None:
            env["PYRESTATE_RETRY_INITIAL_INTERVAL"] = c.retry_initial_interval
        if c.retry_max_attempts is not None:
            env["PYRESTATE_RETRY_MAX_ATTEMPTS"] = str(c.retry_max_attempts)
        if c.retry_on_max_attempts is not None:
            env["PYRESTATE_RETRY_ON_MAX_ATTEMPTS"] = c.retry_on_max_attempts
        if c.retry_max_interval is not None:
            env["PYRESTATE_RETRY_MAX_INTERVAL"] = c.retry_max_interval
        if c.disable_eager_state:
            env["PYRESTATE_DISABLE_EAGER_STATE"] = "true"
        if c.enable_protocol_v7:
            env["PYRESTATE_EXPERIMENTAL_ENABLE_PROTOCOL_V7"] = "true"
        env.update(c.extra_env)
        return env


def make_runtime(
    kind: RuntimeKind,
    config: RuntimeConfig | None = None,
    data_dir: Path | None = None,
    log_dir: Path | None = None,
    name: str | None = None,
) -> OfficialRestateServer | PyrestateServer:
    """The single switch between implementations: everything else in a test is runtime-agnostic."""
    if kind == "official":
        return OfficialRestateServer(config, data_dir, log_dir, name=name or "restate-server")
    if kind == "pyrestate":
        return PyrestateServer(config, data_dir, log_dir, name=name or "pyrestate-server")
    raise ValueError(f"unknown runtime kind {kind!r}")
