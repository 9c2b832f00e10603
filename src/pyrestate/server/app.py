"""Process wiring of `pyrestate server`: build the engine, serve ingress and admin in one event loop.

Both ASGI apps run in the same loop as the engine: admin on hypercorn (HTTP/1.1 and h2c), ingress on a lean
HTTP/1.1 front that hands h2c and unusual requests to hypercorn (`PYRESTATE_INGRESS_HTTP=hypercorn`: all of
it on hypercorn). SIGTERM / SIGINT stop
the listeners first (no new requests), then the engine, so that whatever was acknowledged is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from pyrestate.server.admin import AdminApp
from pyrestate.server.config import ServerConfig
from pyrestate.server.core_api import ServerCore
from pyrestate.server.fasthttp import FastHTTPServer
from pyrestate.server.ingress import IngressApp

log = logging.getLogger("pyrestate.server")

ENGINE_MODULE = "pyrestate.server.engine.core"
ENGINE_FACTORY = "create_core"

CoreFactory = Callable[[ServerConfig], ServerCore]


class EngineUnavailable(RuntimeError):
    pass


def load_core_factory() -> CoreFactory:
    """`create_core(config) -> ServerCore` of the engine, imported only when a server starts."""
    try:
        module = importlib.import_module(ENGINE_MODULE)
    except ModuleNotFoundError as e:
        if e.name is not None and ENGINE_MODULE.startswith(e.name):
            raise EngineUnavailable(
                f"the pyrestate engine ({ENGINE_MODULE}) is not installed in this build; "
                "the server cannot start without it"
            ) from None
        raise
    factory = getattr(module, ENGINE_FACTORY, None)
    if not callable(factory):
        raise EngineUnavailable(f"{ENGINE_MODULE} does not provide {ENGINE_FACTORY}(config)")
    return factory  # type: ignore[no-any-return]


def hypercorn_config(bind: str, *, access_log: bool = False) -> HypercornConfig:
    cfg = HypercornConfig()
    cfg.bind = [bind]
    cfg.include_server_header = False  # Restate sends no `server` header
    # Long-lived pooled connections: never cut a connection after N requests or a short idle period.
    cfg.keep_alive_timeout = 3600
    cfg.keep_alive_max_requests = 1_000_000_000
    cfg.graceful_timeout = 5
    cfg.h2_max_concurrent_streams = 1000
    if access_log:
        cfg.accesslog = logging.getLogger("pyrestate.access")
    return cfg


def _tune_gc() -> None:
    """Objects alive after start-up (modules, schemas, recovered state) move out of the collector's sight,
    and young collections run less often: with the default thresholds a busy server spent whole
    100-300 ms pauses in full collections rescanning the same long-lived objects. Reference counting frees
    almost everything a request allocates; the cycle collector stays on for the rest."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


async def run_server(
    config: ServerConfig,
    *,
    core_factory: CoreFactory | None = None,
    shutdown: asyncio.Event | None = None,
    ready: Callable[[], Any] | None = None,
) -> None:
    """Run until `shutdown` is set (or SIGTERM/SIGINT arrives when `shutdown` is not given)."""
    factory = core_factory or load_core_factory()
    core = factory(config)
    stop = shutdown or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if shutdown is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)

    config.data_dir.mkdir(parents=True, exist_ok=True)
    await core.start()
    _tune_gc()
    log.info("engine started (data dir %s, %d partitions)", config.data_dir.resolve(), config.partitions)
    ingress = IngressApp(core, max_body_bytes=config.max_request_body_bytes)
    admin = AdminApp(core, config)
    try:
        if os.environ.get("PYRESTATE_INGRESS_HTTP", "fast") == "hypercorn":
            ingress_task = serve(
                ingress,  # type: ignore[arg-type]  # a plain ASGI-3 callable
                hypercorn_config(config.ingress_bind),
                shutdown_trigger=stop.wait,
            )
        else:
            ingress_task = _serve_fast(ingress, hypercorn_config(config.ingress_bind), stop)
        servers = [
            asyncio.create_task(ingress_task, name="ingress"),
            asyncio.create_task(
                serve(
                    admin,  # type: ignore[arg-type]
                    hypercorn_config(config.admin_bind),
                    shutdown_trigger=stop.wait,
                ),
                name="admin",
            ),
        ]
        log.info("ingress listening on http://%s, admin on http://%s", config.ingress_bind, config.admin_bind)
        if ready is not None:
            ready()
        done, _ = await asyncio.wait(servers, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                stop.set()
                await asyncio.gather(*servers, return_exceptions=True)
                raise task.exception()  # type: ignore[misc]
        await asyncio.gather(*servers)
    finally:
        log.info("stopping engine")
        await core.stop()
        for sig in installed:
            loop.remove_signal_handler(sig)
        log.info("stopped")


async def _serve_fast(app: IngressApp, cfg: HypercornConfig, stop: asyncio.Event) -> None:
    """The ingress on the lean HTTP/1.1 front (hypercorn takes over h2c and unusual requests)."""
    front = FastHTTPServer(app, cfg)
    await front.start()
    try:
        await stop.wait()
    finally:
        await front.shutdown(cfg.graceful_timeout)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # hypercorn logs every connection error at error level; they are routine for a server.
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)


def main(config: ServerConfig, *, core_factory: CoreFactory | None = None) -> None:
    """Blocking entry point used by `pyrestate server` (uvloop when available)."""
    configure_logging(config.log_level)
    if config.workers > 1:  # a parent supervising worker processes (pyrestate.server.cluster)
        from pyrestate.server.cluster.supervisor import run_supervisor

        raise SystemExit(run_supervisor(config))
    if config.storage == "sqlite":
        from pyrestate.server.cluster.layout import check_single_process

        check_single_process(config.data_dir)
    factory = core_factory or load_core_factory()
    coro = run_server(config, core_factory=factory)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
