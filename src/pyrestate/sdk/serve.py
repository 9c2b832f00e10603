"""Serve an SDK app with hypercorn (h2c + HTTP/1.1), without hypercorn's per-connection request caps."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any


def serve(app: Any, bind: str = "127.0.0.1:9080", *, shutdown_event: asyncio.Event | None = None) -> None:
    """Blocking: serve `app` on `bind` until SIGINT/SIGTERM (or `shutdown_event` when given)."""
    asyncio.run(serve_async(app, bind, shutdown_event=shutdown_event))


async def serve_async(
    app: Any, bind: str = "127.0.0.1:9080", *, shutdown_event: asyncio.Event | None = None
) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [bind]
    config.keep_alive_timeout = 3600
    config.keep_alive_max_requests = 1 << 62
    config.h2_max_concurrent_streams = 1000
    config.max_requests = None
    config.graceful_timeout = 1
    config.accesslog = None
    stop = shutdown_event or asyncio.Event()
    if shutdown_event is None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)
