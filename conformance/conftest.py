"""Fixtures of the conformance suite.

Two switches, read once per session:
  PYRESTATE_CONFORMANCE_RUNTIME = official (default) | pyrestate   -> which server runs the scenarios
  PYRESTATE_CONFORMANCE_SDK     = official (default) | pyrestate   -> which SDK the contract services use

Only `runtime_factory` knows which server implementation runs; scenarios see an `Env` (ingress, admin,
runtime handle, SDK app handle) and nothing else.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from pyrestate.testing import (
    Admin,
    Ingress,
    RuntimeConfig,
    RuntimeKind,
    ServiceApp,
    make_runtime,
    register_deployment,
)
from pyrestate.testing.runtime import OfficialRestateServer, PyrestateServer

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_KIND = cast(RuntimeKind, os.environ.get("PYRESTATE_CONFORMANCE_RUNTIME", "official"))
SDK_KIND = os.environ.get("PYRESTATE_CONFORMANCE_SDK", "official")
APP_REF = "conformance.services.app:app"

# Profiles mirror the upstream suites: server-wide settings a group of scenarios depends on.
# Short retry intervals keep scenarios that go through retries (eventual success, crashed endpoints) fast.
# The official server purges expired idempotency records every `cleanup_interval` (1 h by default); the
# ingress scenarios watch a record expire. pyrestate expires each record on its own timer.
_CLEANUP = {"RESTATE_WORKER__CLEANUP_INTERVAL": "1s"}
DEFAULT = RuntimeConfig(retry_initial_interval="100ms", retry_max_interval="2s", extra_env=_CLEANUP)
# Upstream's alwaysSuspending suite: every await that is not already completed suspends and replays.
ALWAYS_SUSPENDING = dataclasses.replace(DEFAULT, inactivity_timeout="0s")
# Always suspending, and one failed attempt kills the invocation (non-determinism surfaces).
NON_DETERMINISM = RuntimeConfig(
    inactivity_timeout="0s",
    retry_initial_interval="100ms",
    retry_max_attempts=1,
    retry_on_max_attempts="kill",
)

# PYRESTATE_CONFORMANCE_PROTOCOL_V7=1: every runtime offers service protocol V7 (experimental in Restate 1.7).
if os.environ.get("PYRESTATE_CONFORMANCE_PROTOCOL_V7", "") not in ("", "0"):
    DEFAULT, ALWAYS_SUSPENDING, NON_DETERMINISM = (
        dataclasses.replace(c, enable_protocol_v7=True) for c in (DEFAULT, ALWAYS_SUSPENDING, NON_DETERMINISM)
    )

Runtime = OfficialRestateServer | PyrestateServer
_live: list[Any] = []  # processes whose logs are attached to a failing test's report


@dataclass
class Env:
    """A runtime with the contract services registered: what a scenario talks to."""

    runtime: Runtime
    app: ServiceApp
    ingress: Ingress
    admin: Admin
    http11: bool

    @property
    def ingress_url(self) -> str:
        return self.runtime.ingress_url


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance-logs")


@pytest.fixture(scope="session")
def runtime_factory(log_dir: Path) -> Iterator[Callable[..., Runtime]]:
    """THE switch between server implementations. Returns started runtimes, all closed at session end."""
    created: list[Runtime] = []

    def make(config: RuntimeConfig = DEFAULT, name: str = "runtime") -> Runtime:
        rt = make_runtime(RUNTIME_KIND, config, log_dir=log_dir, name=f"{RUNTIME_KIND}-{name}")
        created.append(rt)
        _live.append(rt)
        rt.start()
        return rt

    yield make
    for rt in created:
        rt.close()
        _live.remove(rt)


@pytest.fixture(scope="session")
def service_app_factory(log_dir: Path) -> Iterator[Callable[..., ServiceApp]]:
    """Starts hypercorn processes serving the contract services on the selected SDK."""
    created: list[ServiceApp] = []

    def make(
        name: str = "services", services: str = "", extra_env: dict[str, str] | None = None
    ) -> ServiceApp:
        env = {"PYRESTATE_SDK": SDK_KIND, **(extra_env or {})}
        if services:
            env["SERVICES"] = services
        app = ServiceApp(APP_REF, env=env, log_dir=log_dir, name=f"sdk-{SDK_KIND}-{name}", pythonpath=[ROOT],
                         cwd=ROOT)
        created.append(app)
        _live.append(app)
        app.start()
        return app

    yield make
    for app in created:
        app.close()
        _live.remove(app)


@pytest.fixture(scope="session")
def env_factory(
    runtime_factory: Callable[..., Runtime], service_app_factory: Callable[..., ServiceApp]
) -> Iterator[Callable[..., Env]]:
    """A fresh runtime (+ optionally a fresh SDK app) with the services registered."""
    envs: list[Env] = []
    shared_app: list[ServiceApp] = []

    def make(
        name: str,
        config: RuntimeConfig = DEFAULT,
        http11: bool = False,
        own_app: bool = False,
    ) -> Env:
        rt = runtime_factory(config, name)
        if own_app:
            app = service_app_factory(name)
        else:
            if not shared_app:
                shared_app.append(service_app_factory("shared"))
            app = shared_app[0]
        register_deployment(rt.admin_url, app.url, use_http_11=http11)
        env = Env(rt, app, Ingress(rt.ingress_url), Admin(rt.admin_url), http11)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.ingress.close()
        env.admin.close()


@pytest.fixture(scope="session")
def env_h2(env_factory: Callable[..., Env]) -> Env:
    """Default profile, HTTP/2 bidi-streaming deployment."""
    return env_factory("h2")


@pytest.fixture(scope="session")
def env_h1(env_factory: Callable[..., Env]) -> Env:
    """Default profile, HTTP/1.1 request/response deployment (suspends at every unresolved await)."""
    return env_factory("h1", http11=True)


@pytest.fixture(scope="session")
def env_suspending(env_factory: Callable[..., Env]) -> Env:
    """Inactivity timeout 0: the invocation suspends at every await not completed yet, then replays."""
    return env_factory("suspending", config=ALWAYS_SUSPENDING)


@pytest.fixture(scope="session")
def env_non_determinism(env_factory: Callable[..., Env]) -> Env:
    """Always suspending, retry max attempts 1, kill on max attempts."""
    return env_factory("non-determinism", config=NON_DETERMINISM)


@pytest.fixture(params=["h2", "h1", "suspending"])
def env(request: pytest.FixtureRequest) -> Env:
    """Scenarios using this fixture run on both transports and in the always-suspending profile (the
    catalogue's alwaysSuspending suite covers every class that uses it)."""
    return cast(Env, request.getfixturevalue(f"env_{request.param}"))


@pytest.fixture(params=["h2", "suspending"])
def env_h2_suspending(request: pytest.FixtureRequest) -> Env:
    """Default profile and always-suspending profile, HTTP/2 deployment."""
    return cast(Env, request.getfixturevalue(f"env_{request.param}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for proc in _live:
            report.sections.append((f"log tail: {proc.process.name}", proc.log_tail(40)))
