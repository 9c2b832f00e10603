"""Processes under test: the servers (official restate-server, pyrestate) and the benchmark service.

Each starts on a fresh data dir and free loopback ports and is stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pyrestate.testing.postgres import PostgresServer, find_postgres_bin
from pyrestate.testing.process import ManagedProcess, ProcessError, free_port

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
OFFICIAL_BIN = ROOT / ".cache/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"
PYRESTATE_BIN = ROOT / ".venv/bin/pyrestate"
HYPERCORN_CONFIG = BENCH_DIR / "hypercorn-bench.toml"

# "pyrestate-w2": `pyrestate server --workers 2` (partitions spread over two worker processes).
# "pyrestate-pgN": N nodes in cluster mode on one PostgreSQL server started for the run (the load enters
# through the first node, which routes what the other nodes own, as a load balancer unaware of owners would).
SERVERS = ("official", "pyrestate", "pyrestate-w2", "pyrestate-pg1", "pyrestate-pg2")
SDKS = ("official", "pyrestate")


class Unavailable(RuntimeError):
    """The server or SDK cannot run here; the harness skips it and says why."""


@dataclass
class Server:
    kind: str
    process: ManagedProcess
    ingress_url: str
    admin_url: str
    data_dir: Path
    version: str
    command: str
    durability: str
    # Other processes of a server made of several (nodes, their database), stopped after `process`.
    companions: list[Any] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        """Every process the server is made of, for its CPU and memory."""
        return [self.pid, *(p for c in self.companions if (p := c.pid) is not None)]

    def stop(self) -> None:
        self.process.stop()
        for c in self.companions:
            c.stop()


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return f"? ({e})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def start_server(
    kind: str,
    data_dir: Path,
    log_dir: Path,
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
) -> Server:
    """`extra_args` go to pyrestate's command line, `extra_env` (RESTATE_*) to the official server."""
    if kind.startswith("pyrestate-pg"):
        return _start_nodes(int(kind.removeprefix("pyrestate-pg")), data_dir, log_dir, extra_args)
    data_dir.mkdir(parents=True, exist_ok=True)
    ingress, admin = free_port(), free_port()
    if kind == "official":
        if not OFFICIAL_BIN.is_file():
            raise Unavailable(
                f"official restate-server not installed at {OFFICIAL_BIN} (run `make official-restate`)"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTATE_")}
        # Defaults of the server otherwise (24 partitions, replicated loglet with fsync), as a user runs it.
        env.update(
            {
                "RESTATE_BASE_DIR": str(data_dir),
                "RESTATE_NODE_NAME": "n1",
                "RESTATE_BIND_IP": "127.0.0.1",
                "RESTATE_ADVERTISED_HOST": "127.0.0.1",
                "RESTATE_BIND_PORT": str(free_port()),
                "RESTATE_INGRESS__BIND_PORT": str(ingress),
                "RESTATE_ADMIN__BIND_PORT": str(admin),
                "RESTATE_LISTEN_MODE": "all",
                "RESTATE_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "1",
                "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
                "RESTATE_LOG_FILTER": "warn",
                **(extra_env or {}),
            }
        )
        argv = [str(OFFICIAL_BIN), "--no-logo"]
        proc = ManagedProcess(
            "restate-server",
            argv,
            log_dir / "official-server.log",
            env=env,
            cwd=data_dir,
            stop_signal=signal.SIGTERM,
            stop_timeout=20.0,
            ready_url=f"http://127.0.0.1:{ingress}/restate/health",
            ready_timeout=90.0,
        )
        version = _version([str(OFFICIAL_BIN), "--version"])
        durability = "defaults: replicated loglet (replication 1) on RocksDB with WAL fsync, group commit"
    elif kind == "pyrestate" or kind.startswith("pyrestate-w"):
        if kind != "pyrestate":
            extra_args = ["--workers", kind.removeprefix("pyrestate-w"), *extra_args]
        if not PYRESTATE_BIN.is_file():
            raise Unavailable(f"{PYRESTATE_BIN} missing (run `make` to create the venv)")
        argv = [
            str(PYRESTATE_BIN),
            "server",
            "--data-dir",
            str(data_dir),
            "--ingress-bind",
            f"127.0.0.1:{ingress}",
            "--admin-bind",
            f"127.0.0.1:{admin}",
            "--log-level",
            "warning",
            *extra_args,
        ]
        proc = ManagedProcess(
            "pyrestate-server",
            argv,
            log_dir / "pyrestate-server.log",
            cwd=data_dir,
            stop_signal=signal.SIGTERM,
            stop_timeout=20.0,
            ready_url=f"http://127.0.0.1:{admin}/health",
            ready_timeout=60.0,
        )
        version = _version([str(PYRESTATE_BIN), "--version"])
        durability = "SQLite synchronous=FULL in WAL mode (default), group commit"
    else:
        raise ValueError(kind)
    try:
        proc.start()
    except ProcessError as e:
        raise Unavailable(f"{kind} server did not start ({_last_line(proc)})\n{e}") from None
    server = Server(
        kind,
        proc,
        f"http://127.0.0.1:{ingress}",
        f"http://127.0.0.1:{admin}",
        data_dir,
        version,
        " ".join(argv),
        durability,
    )
    try:
        _wait_answers(f"{server.ingress_url}/", proc, 60.0)
    except Unavailable:
        proc.stop()
        raise
    return server


def _start_nodes(count: int, data_dir: Path, log_dir: Path, extra_args: Sequence[str]) -> Server:
    """`count` pyrestate nodes on one PostgreSQL server (fsync on, as in production); the first node is the
    entry point, the others and the database are its companions."""
    if find_postgres_bin() is None:
        raise Unavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    pg = PostgresServer(settings=("max_connections=400",))
    pg.start()
    url = pg.url("postgres")
    started: list[Server] = []
    try:
        for i in range(1, count + 1):
            args = [
                "--storage",
                url,
                "--node-id",
                f"n{i}",
                "--node-bind",
                f"127.0.0.1:{free_port()}",
                *extra_args,
            ]
            (log_dir / f"n{i}").mkdir(parents=True, exist_ok=True)
            started.append(start_server("pyrestate", data_dir / f"n{i}", log_dir / f"n{i}", args))
        _wait_owned(url, count)
    except BaseException:
        for srv in reversed(started):
            srv.stop()
        pg.stop()
        raise
    first = started[0]
    first.kind = f"pyrestate-pg{count}"
    first.companions = [*(srv.process for srv in started[1:]), pg]
    first.durability = f"{count} node(s) on PostgreSQL 15 (fsync on, synchronous_commit on)"
    return first


def _wait_owned(url: str, count: int, timeout: float = 60.0) -> None:
    """Until every partition is leased and every node holds some: the cluster is balanced."""
    import psycopg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(url, autocommit=True) as conn:
            try:
                rows = conn.execute(
                    "SELECT count(*), count(DISTINCT owner) FROM partition_leases WHERE expires_at > now()"
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                rows = None
        if rows is not None and rows[1] == count and rows[0] > 0:
            return
        time.sleep(0.2)
    raise Unavailable(f"the {count} nodes did not share the partitions within {timeout}s")


def _last_line(proc: ManagedProcess) -> str:
    """The last non-empty log line, usually the error that stopped the process."""
    try:
        lines = [ln.strip() for ln in proc.log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "empty log"


def _wait_answers(url: str, proc: ManagedProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.is_running():
            raise Unavailable(f"{proc.name} exited with {proc.returncode}\n{proc.log_tail(30)}")
        try:
            httpx.get(url, timeout=2.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise Unavailable(f"{url} did not answer within {timeout}s\n{proc.log_tail(30)}")


@dataclass
class ServiceProcess:
    sdk: str
    process: ManagedProcess
    url: str
    version: str
    command: str

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def stop(self) -> None:
        self.process.stop()


def start_service(sdk: str, log_dir: Path) -> ServiceProcess:
    """hypercorn, one worker, h2c + HTTP/1.1, serving bench/services.py with the chosen SDK."""
    if sdk not in SDKS:
        raise ValueError(sdk)
    mod = "restate" if sdk == "official" else "pyrestate.sdk"
    check = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True)
    if check.returncode != 0:
        raise Unavailable(f"SDK {mod} cannot be imported: {check.stderr.strip().splitlines()[-1:]}")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "hypercorn",
        "--config",
        str(HYPERCORN_CONFIG),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "bench.services:app",
    ]
    env = dict(
        os.environ,
        BENCH_SDK=sdk,
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    proc = ManagedProcess(
        f"sdk-{sdk}",
        argv,
        log_dir / f"sdk-{sdk}.log",
        env=env,
        cwd=ROOT,
        stop_signal=signal.SIGINT,
        stop_timeout=10.0,
        ready_url=f"http://127.0.0.1:{port}/health",
        ready_timeout=30.0,
    )
    try:
        proc.start()
    except ProcessError as e:
        raise Unavailable(f"SDK service ({sdk}) did not start ({_last_line(proc)})\n{e}") from None
    if sdk == "official":
        version = "restate-sdk " + _pkg_version("restate-sdk")
    else:
        version = "pyrestate.sdk " + _pkg_version("pyrestate")
    return ServiceProcess(
        sdk,
        proc,
        f"http://127.0.0.1:{port}/",
        version + ", hypercorn " + _pkg_version("hypercorn"),
        "python " + " ".join(argv[1:]),
    )


def _pkg_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def register(server: Server, service: ServiceProcess, timeout: float = 30.0) -> None:
    """POST /deployments, then one successful Noop call through the ingress."""
    deadline = time.monotonic() + timeout
    last = ""
    with httpx.Client(timeout=10.0) as c:
        while time.monotonic() < deadline:
            try:
                r = c.post(f"{server.admin_url}/deployments", json={"uri": service.url})
                if r.is_success:
                    break
                last = f"{r.status_code} {r.text[:300]}"
            except httpx.TransportError as e:
                last = repr(e)
            time.sleep(0.5)
        else:
            raise Unavailable(f"registering {service.url} at {server.kind} failed: {last}")
        while time.monotonic() < deadline:
            try:
                r = c.post(f"{server.ingress_url}/Noop/call", json="ping")
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:300]}"
            except httpx.TransportError as e:
                last = repr(e)
            time.sleep(0.3)
    raise Unavailable(f"smoke call Noop/call through {server.kind} failed: {last}")
