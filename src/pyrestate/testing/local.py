"""A Restate environment for your own tests: a server and your services on free loopback ports, no Docker.

    from pyrestate.testing import local_restate

    with local_restate(app) as env:                     # an ASGI app object, served on a thread here
        assert env.ingress.call_json("Greeter", "greet", "Ada") == "Hello, Ada!"

    with local_restate("mymod:app") as env:             # or MODULE:APP, served by a hypercorn process
        env.apps[0].kill(); env.apps[0].start()          # ...which a test may crash (SIGKILL) and restart

The server is pyrestate's (`runtime="official"` runs the official restate-server instead, if installed),
on a temporary data directory removed afterwards. Several apps may be passed; each is registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrestate.testing.admin import Admin, register_deployment
from pyrestate.testing.ingress import Ingress
from pyrestate.testing.process import free_port, wait_until_answers
from pyrestate.testing.runtime import (
    OfficialRestateServer,
    PyrestateServer,
    RuntimeConfig,
    RuntimeKind,
    make_runtime,
)
from pyrestate.testing.service_app import ServiceApp

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
AppSpec = ASGIApp | str


class AppProcess(ServiceApp):
    """A ServiceApp whose kill takes the whole process group down.

    `python -m hypercorn` serves from a spawned worker process: SIGKILL to the parent alone orphans the
    worker, which keeps serving the port and finishing invocations, so the "crash" never happens.
    """

    def kill(self) -> None:
        pid = self.process.pid
        if pid is not None and self.process.is_running():
            # start_new_session made the parent the leader of a group holding just it and its workers.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.process.kill()


class InProcessApp:
    """An ASGI app served by hypercorn (h2c and HTTP/1.1) on a daemon thread with its own event loop.

    In the test's process, so tests can swap the clients the handlers use or inspect what they did.
    """

    def __init__(self, app: ASGIApp, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name=f"asgi-{self.port}", daemon=True
        )
        self._thread.start()
        started.wait(timeout)
        wait_until_answers(f"{self.url}/health", timeout=timeout)
        if self._error is not None:
            raise RuntimeError(f"serving the app failed: {self._error!r}")

    def _run(self, started: threading.Event) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        # The server keeps long-lived pooled connections to a deployment: never cut them.
        config.keep_alive_timeout = 3600
        config.keep_alive_max_requests = 1_000_000_000
        config.graceful_timeout = 1
        config.accesslog = None
        config.errorlog = None

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            started.set()
            await serve(self.app, config, shutdown_trigger=self._stop.wait, mode="asgi")  # type: ignore[arg-type]

        try:
            asyncio.run(main())
        except BaseException as e:  # reported by start() / stop() in the test's thread
            self._error = e
            started.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            stop = self._stop
            self._loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = self._loop = self._stop = None

    def __enter__(self) -> InProcessApp:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LocalRestate:
    """A running server and the apps registered with it; `ingress` and `admin` are ready-made clients."""

    runtime: OfficialRestateServer | PyrestateServer
    apps: list[InProcessApp | AppProcess]
    ingress: Ingress
    admin: Admin
    services: list[str] = field(default_factory=list)

    @property
    def ingress_url(self) -> str:
        return self.runtime.ingress_url

    @property
    def admin_url(self) -> str:
        return self.runtime.admin_url

    def register(self, app: InProcessApp | AppProcess) -> list[str]:
        """Register (again) an app, e.g. after starting a new version of it; returns its service names."""
        answer = register_deployment(self.admin_url, app.url)
        return [s["name"] for s in answer.get("services", [])]


@contextmanager
def local_restate(
    *apps: AppSpec,
    runtime: RuntimeKind = "pyrestate",
    config: RuntimeConfig | None = None,
    app_env: Mapping[str, str] | None = None,
    pythonpath: Sequence[Path] = (),
    log_dir: Path | None = None,
) -> Iterator[LocalRestate]:
    """Start a server, serve and register `apps`, yield the environment, stop everything on exit.

    An app is an ASGI object (served in this process) or "MODULE:APP" (a hypercorn process, importing from
    the current directory and `pythonpath`, with `app_env` and RESTATE_URL set to the ingress).
    """
    with ExitStack() as stack:
        rt = make_runtime(runtime, config, log_dir=log_dir)
        stack.callback(rt.close)
        rt.start()
        served: list[InProcessApp | AppProcess] = []
        for i, spec in enumerate(apps):
            app: InProcessApp | AppProcess
            if isinstance(spec, str):
                app = AppProcess(
                    spec,
                    env={"RESTATE_URL": rt.ingress_url, **(app_env or {})},
                    log_dir=log_dir,
                    name=f"app-{i}",
                    pythonpath=[Path.cwd(), *pythonpath],
                )
                stack.callback(app.close)
            else:
                app = InProcessApp(spec)
                stack.callback(app.stop)
            app.start()
            served.append(app)
        ingress = stack.enter_context(Ingress(rt.ingress_url))
        admin = Admin(rt.admin_url)
        stack.callback(admin.close)
        env = LocalRestate(rt, served, ingress, admin)
        for app in served:
            env.services.extend(env.register(app))
        yield env
