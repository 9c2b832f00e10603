"""`run_server`: both APIs served in one event loop around one core, started and stopped in order."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
from http_fake_core import FakeCore
from http_support import free_port

from pyrestate.server.app import run_server
from pyrestate.server.config import ServerConfig

HERE = Path(__file__).parent


class RecordingCore(FakeCore):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")


def test_run_server_serves_both_apps_and_stops_the_core(tmp_path: Path) -> None:
    core = RecordingCore()
    ingress_port, admin_port = free_port(), free_port()
    config = ServerConfig(
        data_dir=tmp_path / "data",
        ingress_bind=f"127.0.0.1:{ingress_port}",
        admin_bind=f"127.0.0.1:{admin_port}",
    )
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(
            run_server(config, core_factory=lambda _: core, shutdown=stop, ready=ready.set)
        ),
        daemon=True,
    )
    thread.start()
    assert ready.wait(10)
    deadline = time.monotonic() + 10
    while True:
        try:
            health = httpx.get(f"http://127.0.0.1:{ingress_port}/restate/health")
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert health.json()["services"][0] == "taskWorker"
    version = httpx.get(f"http://127.0.0.1:{admin_port}/version").json()
    assert version["ingress_endpoint"] == f"http://127.0.0.1:{ingress_port}/"
    assert (tmp_path / "data").is_dir()
    loop.call_soon_threadsafe(stop.set)
    thread.join(15)
    assert not thread.is_alive()
    assert core.events == ["start", "stop"]
    loop.close()


def test_server_process_stops_on_sigterm(tmp_path: Path) -> None:
    ingress_port, admin_port = free_port(), free_port()
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from http_fake_core import FakeCore
        from pyrestate.server import app, config

        class Core(FakeCore):
            async def stop(self):
                print("core stopped", flush=True)

        cfg = config.from_values({{"data_dir": {str(tmp_path / "d")!r},
                                   "ingress_bind": "127.0.0.1:{ingress_port}",
                                   "admin_bind": "127.0.0.1:{admin_port}"}})
        app.main(cfg, core_factory=lambda c: Core())
        """)
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ)
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{admin_port}/health").status_code == 200
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert b"core stopped" in out
