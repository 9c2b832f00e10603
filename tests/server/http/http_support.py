"""Serve the ingress and admin apps over real HTTP (hypercorn on free loopback ports) around a FakeCore."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_fake_core import FakeCore
from hypercorn.asyncio import serve

from pyrestate.server.admin import AdminApp
from pyrestate.server.app import hypercorn_config
from pyrestate.server.config import ServerConfig
from pyrestate.server.ingress import IngressApp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """Run `app` with hypercorn in a background event loop; yields its base URL."""
    port = free_port()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(
                serve(app, hypercorn_config(f"127.0.0.1:{port}"), shutdown_trigger=stop.wait)
            )
        except BaseException as e:
            failure.append(e)
        finally:
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if failure or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {failure}") from None
            time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


@pytest.fixture
def core() -> FakeCore:
    return FakeCore()


@pytest.fixture
def ingress(core: FakeCore) -> Iterator[httpx.Client]:
    # Restate's own CORS (any origin reflected): the behaviour sheet these tests check byte for byte.
    app = IngressApp(core, max_body_bytes=1024, cors_origins=("*",))
    with served(app) as url, httpx.Client(base_url=url, timeout=10) as c:
        yield c


@pytest.fixture
def admin_config() -> ServerConfig:
    return ServerConfig()


@pytest.fixture
def admin(core: FakeCore, admin_config: ServerConfig) -> Iterator[httpx.Client]:
    # like the Restate CLI, ask for no compression (gzip is tested explicitly)
    with (
        served(AdminApp(core, admin_config)) as url,
        httpx.Client(base_url=url, timeout=30, headers={"accept-encoding": "identity"}) as c,
    ):
        yield c
