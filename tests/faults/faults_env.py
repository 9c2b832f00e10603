"""A runtime and the fault services on free loopback ports, the nemesis targets over both, and the knobs.

Knobs (environment variables), so the same tests serve as a short CI run and a long soak:
  FAULTS_SEED      seed of the nemesis and the generators (default 1)
  FAULTS_DURATION  seconds of chaos per test (default: each test's own CI value)
  FAULTS_SCALE     multiplies the amount of work (programs, clients) (default 1)
  FAULTS_SDKS      comma list of SDKs serving the services: official,pyrestate (default both)
  FAULTS_RUNTIME   pyrestate (default), official (checks the tests themselves), or nodes: three pyrestate
                   nodes on one PostgreSQL database (started by the test), any of them hit by the nemesis
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

from pyrestate.testing import RuntimeConfig, RuntimeKind, ServiceApp, make_runtime, register_deployment
from pyrestate.testing.faults import Target
from pyrestate.testing.nodes import NodeCluster
from pyrestate.testing.postgres import PostgresServer, find_postgres_bin
from pyrestate.testing.runtime import OfficialRestateServer, PyrestateServer

HERE = Path(__file__).resolve().parent
SEED = int(os.environ.get("FAULTS_SEED") or 1)
SCALE = float(os.environ.get("FAULTS_SCALE") or 1)
SDKS = [s.strip() for s in os.environ.get("FAULTS_SDKS", "official,pyrestate").split(",") if s.strip()]
RUNTIME = os.environ.get("FAULTS_RUNTIME", "pyrestate")

# Fast retries and a short inactivity/abort window: after a pause or a crash of the service process the
# runtime gives up on the stalled attempt quickly and retries it.
CONFIG = RuntimeConfig(
    retry_initial_interval="100ms",
    retry_max_interval="1s",
    inactivity_timeout="5s",
    abort_timeout="5s",
)

SUMMARIES: list[str] = []  # printed again at the end of the session (conftest)


def duration(default: float) -> float:
    return float(os.environ.get("FAULTS_DURATION") or default)


def summary(line: str) -> None:
    SUMMARIES.append(line)
    print(line, flush=True)


@dataclass
class FaultEnv:
    sdk: str
    runtime: OfficialRestateServer | PyrestateServer | NodeCluster
    app: ServiceApp
    side_file: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ingress_url(self) -> str:
        return self.runtime.ingress_url

    @property
    def admin_url(self) -> str:
        return self.runtime.admin_url

    def targets(self, server: bool = True, service: bool = True) -> list[Target]:
        out = []
        runtime = self.runtime
        if server and isinstance(runtime, NodeCluster):
            out += [Target(f"node-{n.process.name}", n.process, signal.SIGTERM) for n in runtime.nodes]
        elif server and not isinstance(runtime, NodeCluster):
            out.append(Target("server", runtime.process, signal.SIGTERM))
        if service:
            # The official SDK's hypercorn stops gracefully on SIGINT only; ours honours SIGTERM.
            graceful = signal.SIGINT if self.sdk == "official" else signal.SIGTERM
            out.append(Target(f"sdk-{self.sdk}", self.app.process, graceful))
        return out

    def log_tails(self, lines: int = 80) -> str:
        return self.runtime.log_tail(lines) + "\n" + self.app.log_tail(lines)


@contextmanager
def _runtime(tmp_path: Path) -> Iterator[OfficialRestateServer | PyrestateServer | NodeCluster]:
    if RUNTIME != "nodes":
        yield make_runtime(
            cast(RuntimeKind, RUNTIME), CONFIG, data_dir=tmp_path / "runtime", log_dir=tmp_path
        )
        return
    if find_postgres_bin() is None:
        raise RuntimeError("FAULTS_RUNTIME=nodes needs the PostgreSQL server (scripts install it)")
    with PostgresServer() as pg:
        yield NodeCluster(pg.create_database(), tmp_path / "nodes", log_dir=tmp_path, config=CONFIG)


@contextmanager
def fault_env(sdk: str, tmp_path: Path) -> Iterator[FaultEnv]:
    side_file = tmp_path / "steps.tsv"
    app = ServiceApp(
        "faults_services:app",
        env={"PYRESTATE_SDK": sdk, "FAULTS_SIDE_FILE": str(side_file)},
        log_dir=tmp_path,
        name=f"sdk-{sdk}",
        pythonpath=[HERE],
    )
    with _runtime(tmp_path) as runtime:
        try:
            runtime.start()
            app.start()
            register_deployment(runtime.admin_url, app.url)
            yield FaultEnv(sdk, runtime, app, side_file)
        finally:
            app.close()
            runtime.close()


def call_until_ok(url: str, body: Any, idempotency_key: str | None = None, timeout: float = 90.0) -> Any:
    """POST until a 200 arrives (only for reads, or writes carrying an idempotency key)."""
    headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.post(url, json=body, headers=headers, timeout=10.0)
            if r.status_code == 200:
                return r.json()
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.TransportError as e:
            last = repr(e)
        time.sleep(0.3)
    raise AssertionError(f"POST {url} never answered 200 within {timeout}s: {last}")
