"""`pyrestate serve`: an SDK ASGI app on hypercorn in this process, stopped by SIGINT/SIGTERM in bounded time.

hypercorn's own runner waits for every open stream on shutdown, and the official SDK's handler tasks do not
end when cancelled while they wait for the server (a sleep, an awakeable): Ctrl-C then hung, or ended in
pages of ExceptionGroup tracebacks. Here open streams get `graceful_timeout` to finish before hypercorn
shuts down, then the process exits: an SDK app keeps nothing durable, the server retries every interrupted
attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from hypercorn.asyncio import serve
from hypercorn.config import Config

from pyrestate.cli.admin_client import EXIT_USAGE, CliError
from pyrestate.server import logs

log = logging.getLogger("pyrestate.serve")

ASGIApp = Any


def load_app(app_ref: str) -> ASGIApp:
    """MODULE:APP imported from the current directory; one-line errors for the usual mistakes."""
    module_name, sep, attr = app_ref.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"expected MODULE:APP (e.g. app:app), got {app_ref!r}", EXIT_USAGE)
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and module_name.split(".")[0] == e.name.split(".")[0]:
            raise CliError(f"no module named {module_name!r} (looked in {cwd})", EXIT_USAGE) from None
        raise CliError(f"importing {module_name!r} failed: {_where(e)}", EXIT_USAGE) from None
    except Exception as e:
        raise CliError(f"importing {module_name!r} failed: {_where(e)}", EXIT_USAGE) from None
    app = getattr(module, attr, None)
    if app is None:
        raise CliError(f"module {module_name!r} has no attribute {attr!r}", EXIT_USAGE)
    if not callable(app):
        raise CliError(f"{app_ref} is not an ASGI app (got {type(app).__name__})", EXIT_USAGE)
    return app


def _where(e: BaseException) -> str:
    """`ValueError: bad (app.py:12)`: the exception and the innermost frame of the user's code."""
    frames = traceback.extract_tb(e.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename]
    at = f" ({Path(user[-1].filename).name}:{user[-1].lineno})" if user else ""
    return f"{type(e).__name__}: {e}{at}"


class _CountingApp:
    """Counts the invocation streams open right now (`/invoke/…` requests)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.open = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        invoke = scope.get("type") == "http" and "/invoke/" in str(scope.get("path", ""))
        if invoke:
            self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            if invoke:
                self.open -= 1


    async def _lifespan(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The app's lifespan if it has one; the SDK's app rejects the scope, and hypercorn would warn
        "Lifespan error" at every start: then the protocol is answered here."""
        received = False

        async def tracked() -> Any:
            nonlocal received
            received = True
            return await receive()

        try:
            await self.app(scope, tracked, send)
            return
        except Exception:
            if received:
                raise
        while True:
            message = await receive()
            kind = message.get("type")
            if kind == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def hypercorn_config(bind: str, graceful_timeout: float) -> Config:
    cfg = Config()
    cfg.bind = [bind]
    # The server keeps pooled long-lived connections: never cut one after N requests or a short idle time.
    cfg.keep_alive_timeout = 3600
    cfg.keep_alive_max_requests = 1_000_000_000
    cfg.graceful_timeout = graceful_timeout
    cfg.errorlog = logging.getLogger("hypercorn.error")
    return cfg


async def _serve(app: _CountingApp, cfg: Config, app_ref: str) -> None:
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if signalled.is_set():
            return
        n = app.open
        logs.event(
            log,
            logging.INFO,
            f"Received {sig.name}, stopping {app_ref}: "
            + (f"{n} invocation(s) in flight; the server retries them" if n else "nothing in flight"),
            signal=sig.name,
            in_flight=n,
        )
        signalled.set()

    loop.add_signal_handler(signal.SIGINT, on_signal, signal.SIGINT)
    _on_sigterm(loop, lambda: on_signal(signal.SIGTERM))
    server = asyncio.create_task(serve(app, cfg, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    log.info("Serving %s on http://%s (Ctrl-C stops)", app_ref, cfg.bind[0])
    await asyncio.wait([server, asyncio.create_task(signalled.wait())], return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        server.result()  # e.g. the port is taken: the error reaches the caller
        return
    # Streams first: on SIGTERM the official SDK suspends its invocations and ends their streams. Once
    # hypercorn shuts down, a stream that still ends fails inside it ("Exception in ASGI app").
    deadline = loop.time() + cfg.graceful_timeout
    while app.open and loop.time() < deadline:
        await asyncio.sleep(0.02)
    stop.set()
    # hypercorn cancels what is left; a second for its own clean-up.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(server), 1.0)


def _on_sigterm(loop: asyncio.AbstractEventLoop, hook: Callable[[], None]) -> None:
    """The official SDK takes SIGTERM over on its first request (to let invocations suspend); it offers a
    hook list per loop so that others keep theirs. Without that SDK, a plain signal handler."""
    try:
        from restate.server import install_shutdown_hook
    except ImportError:
        loop.add_signal_handler(signal.SIGTERM, hook)
    else:
        install_shutdown_hook(loop, hook, signal.SIGTERM)


def run(app_ref: str, bind: str, graceful_timeout: float = 1.0) -> NoReturn:
    app = _CountingApp(load_app(app_ref))
    cfg = hypercorn_config(bind, graceful_timeout)
    loop = asyncio.new_event_loop()
    code = 0
    try:
        loop.run_until_complete(_serve(app, cfg, app_ref))
    except OSError as e:
        sys.stderr.write(f"error: cannot listen on {bind}: {e.strerror or e}\n")
        code = 1
    # Not asyncio.run's clean-up: it would wait forever for handler tasks that ignore cancellation. Nothing
    # here is durable, so the process ends now (no tracebacks, no never-awaited warnings at exit).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
