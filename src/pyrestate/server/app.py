"""Process wiring of `pyrestate server`: build the engine, serve ingress and admin in one event loop.

Both ASGI apps run in the same loop as the engine, each on a lean HTTP/1.1 front (llhttp) that hands h2c and
unusual requests to hypercorn (`PYRESTATE_INGRESS_HTTP=hypercorn`: both ports wholly on hypercorn, without
the front's timeouts and connection limit). SIGTERM / SIGINT stop the listeners first (no new requests), then
the engine, so that whatever was acknowledged is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import signal
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

import pyrestate
from pyrestate.server import logs, tracing
from pyrestate.server.admin import AdminApp
from pyrestate.server.config import ServerConfig
from pyrestate.server.core_api import ServerCore
from pyrestate.server.engine.core import create_core
from pyrestate.server.fasthttp import DEFAULT_MAX_HEAD, FastHTTPServer
from pyrestate.server.ingress import IngressApp

log = logging.getLogger("pyrestate.server")

CoreFactory = Callable[[ServerConfig], ServerCore]


def hypercorn_config(
    bind: str, *, access_log: bool = False, idle_timeout: float = 3600.0
) -> HypercornConfig:
    cfg = HypercornConfig()
    cfg.bind = [bind]
    cfg.include_server_header = False  # Restate sends no `server` header
    # Long-lived pooled connections: never cut a connection after N requests or a short idle period.
    cfg.keep_alive_timeout = idle_timeout
    cfg.keep_alive_max_requests = 1_000_000_000
    cfg.graceful_timeout = 5
    cfg.h2_max_concurrent_streams = 1000
    # A Logger, not "-": hypercorn then adds no stderr handler of its own and our format and levels apply.
    cfg.errorlog = logging.getLogger("hypercorn.error")
    if access_log:
        cfg.accesslog = logging.getLogger("pyrestate.access")
    return cfg


def connection_limit(configured: int) -> int:
    """The per-port connection limit, lowered so that both ports at their limit leave descriptors over for
    the engine (files, connections to deployments): running out of them locks every port out."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 2 * configured + 1024
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            if target > soft:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            if soft < wanted:
                limit = max(16, (soft - 1024) // 2 if soft > 1100 else soft // 4)
                log.warning(
                    "at most %d open connections per port (not %d): the descriptor limit is %d",
                    limit,
                    configured,
                    soft,
                )
                return limit
    return configured


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
    factory = core_factory or create_core
    core = factory(config)
    stop = shutdown or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            return
        n = getattr(core, "in_flight", 0)
        # The one line a stop prints: what was interrupted comes back, nothing is lost.
        logs.event(
            log,
            logging.INFO,
            f"Received {sig.name}, shutting down: "
            + (f"{n} invocation(s) in flight will resume on the next start" if n else "nothing in flight"),
            signal=sig.name,
            in_flight=n,
        )
        stop.set()

    if shutdown is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)

    config.data_dir.mkdir(parents=True, exist_ok=True)
    if config.tracing_endpoint is not None:
        instance = config.node_id or socket.gethostname()
        tracing.start(config.tracing_endpoint, instance=instance, version=pyrestate.__version__)
        log.info("exporting traces to %s", config.tracing_endpoint)
    await core.start()
    _tune_gc()
    log.info("engine started (data dir %s, %d partitions)", config.data_dir.resolve(), config.partitions)
    ingress = IngressApp(
        core,
        max_body_bytes=config.max_request_body_bytes,
        max_key_bytes=config.key_size_limit,
        max_headers=config.max_request_headers,
        max_headers_bytes=config.max_request_headers_bytes,
        cors_origins=config.ingress_cors_origins
    )
    admin = AdminApp(core, config)
    admin.prewarm_queries()
    idle = config.http_idle_timeout_ms / 1000
    limit = connection_limit(config.max_connections)
    try:
        servers: list[asyncio.Task[None]] = []
        for name, asgi_app, bind in (
            ("ingress", ingress, config.ingress_bind),
            ("admin", admin, config.admin_bind),
        ):
            cfg = hypercorn_config(bind, idle_timeout=idle)
            max_head = DEFAULT_MAX_HEAD
            if name == "ingress":
                # Heads up to the configured limits reach the app, which answers 431 with a message above
                # them; hypercorn's own bounds (16 KiB per read for HTTP/1.1, 64 KiB for HTTP/2) and the
                # front's would cut some off with a bare 431.
                max_head = config.max_request_headers_bytes + 64 * 1024
                cfg.h11_max_incomplete_size = max_head
                cfg.h2_max_header_list_size = (
                    config.max_request_headers_bytes + 32 * config.max_request_headers + 64 * 1024
                )
            coro: Coroutine[Any, Any, None]
            if os.environ.get("PYRESTATE_INGRESS_HTTP", "fast") == "hypercorn":
                coro = serve(asgi_app, cfg, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
            else:
                front = FastHTTPServer(
                    asgi_app,
                    cfg,
                    header_timeout=config.http_header_timeout_ms / 1000,
                    idle_timeout=idle,
                    max_connections=limit,
                    max_head_bytes=max_head,
                    name=name,
                )
                coro = _serve_fast(front, stop)
            servers.append(asyncio.create_task(coro, name=name))
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
        log.debug("stopping engine")
        await core.stop()
        if tracing.sink is not None:
            await asyncio.to_thread(tracing.stop)  # the spans still queued, bounded
        for sig in installed:
            loop.remove_signal_handler(sig)
        log.debug("stopped")


async def _serve_fast(front: FastHTTPServer, stop: asyncio.Event) -> None:
    """An API on the lean HTTP/1.1 front (hypercorn takes over h2c and unusual requests)."""
    await front.start()
    try:
        await stop.wait()
    finally:
        await front.shutdown(front.config.graceful_timeout)


def configure_logging(config: ServerConfig) -> None:
    logs.configure(config.log_level, config.log_format, config.log_filter)


def main(config: ServerConfig, *, core_factory: CoreFactory | None = None) -> None:
    """Blocking entry point used by `pyrestate server` (uvloop when available)."""
    configure_logging(config)
    factory = core_factory or create_core
    coro = run_server(config, core_factory=factory)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
