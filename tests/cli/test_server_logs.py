"""What `pyrestate server` logs at info: registrations, invocation errors with their retry, pauses, kills,
cancels; text and `--log-format json`; no third-party noise at `--log-level debug`."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import HERE

from pyrestate.server import logs
from pyrestate.testing import PyrestateServer, ServiceApp, eventually, register_deployment
from pyrestate.testing.runtime import RuntimeConfig

RETRY = RuntimeConfig(retry_initial_interval="100ms", retry_max_attempts=3)


def _stack(tmp: Path, name: str, **env: str) -> tuple[PyrestateServer, ServiceApp]:
    cfg = RuntimeConfig(
        retry_initial_interval=RETRY.retry_initial_interval,
        retry_max_attempts=RETRY.retry_max_attempts,
        extra_env=dict(env),
    )
    server = PyrestateServer(cfg, data_dir=tmp / name, log_dir=tmp, name=name)
    app = ServiceApp("first_day_app:app", log_dir=tmp, cwd=HERE, pythonpath=[HERE], name=f"{name}-app")
    return server, app


@pytest.fixture
def text_stack(tmp_path: Path) -> Iterator[tuple[PyrestateServer, ServiceApp]]:
    server, app = _stack(tmp_path, "text-server", PYRESTATE_LOG_LEVEL="debug")
    server.start()
    app.start()
    try:
        yield server, app
    finally:
        app.close()
        server.close()


def _log(server: PyrestateServer) -> str:
    return server.log_path.read_text(errors="replace")


def _fail_until_paused(server: PyrestateServer, app: ServiceApp) -> str:
    dep = register_deployment(server.admin_url, app.url)["id"]
    r = httpx.post(f"{server.ingress_url}/Failer/boom/send", json="x", timeout=10)
    inv: str = r.json()["invocationId"]
    eventually(lambda: _assert_in("pausing it", _log(server)), timeout=20)
    return f"{dep} {inv}"


def _assert_in(needle: str, text: str) -> None:
    assert needle in text


def test_text_log_tells_registrations_failures_retries_and_operations(
    text_stack: tuple[PyrestateServer, ServiceApp],
) -> None:
    server, app = text_stack
    dep, inv = _fail_until_paused(server, app).split()
    text = _log(server)
    assert f"Deployment registered deployment_id={dep} uri={app.url}" in text
    assert "Service Failer registered service=Failer type=Service revision=1 handlers=boom" in text
    assert "Service Sleepy registered" in text and "handlers=nap,wait" in text
    retries = [ln for ln in text.splitlines() if "Invocation error, retrying in" in ln]
    assert len(retries) == 2, text
    first = retries[0]
    for part in (
        "WARNING pyrestate.invocation: Invocation error, retrying in 100ms",
        f"invocation_id={inv}",
        "target=Failer/boom",
        "attempt=1",
        f"deployment_id={dep}",
        "error=\"[500] ValueError('boom for x')\"",
        "retry_in=100ms",
    ):
        assert part in first, first
    assert "attempt=2" in retries[1] and "retry_in=200ms" in retries[1]
    # The handler's stack trace follows the line, indented, as on the official server.
    assert "  stacktrace:\n    Traceback (most recent call last):" in text
    paused = next(ln for ln in text.splitlines() if "pausing it" in ln)
    assert f"invocation_id={inv}" in paused and "attempt=3" in paused

    # Operator actions: kill, cancel, pause, resume.
    waiting = httpx.post(f"{server.ingress_url}/Sleepy/w1/wait/send", timeout=10).json()["invocationId"]
    eventually(lambda: _assert_running(server, waiting), timeout=20)
    assert httpx.patch(f"{server.admin_url}/invocations/{waiting}/pause").status_code in (200, 202)
    eventually(lambda: _assert_in(f"Invocation paused invocation_id={waiting}", _log(server)))
    assert httpx.patch(f"{server.admin_url}/invocations/{waiting}/resume").status_code in (200, 202)
    eventually(lambda: _assert_in(f"Invocation resumed invocation_id={waiting}", _log(server)))
    assert httpx.patch(f"{server.admin_url}/invocations/{waiting}/cancel").status_code in (200, 202)
    eventually(lambda: _assert_in(f"Invocation cancel requested invocation_id={waiting}", _log(server)))
    assert httpx.patch(f"{server.admin_url}/invocations/{inv}/kill").status_code == 200
    eventually(lambda: _assert_in(f"Invocation killed invocation_id={inv} target=Failer/boom", _log(server)))

    # --log-level debug raises pyrestate's loggers only: no h2/hpack/hypercorn/httpx lines.
    server.stop()
    text = _log(server)
    assert "DEBUG pyrestate.server: stopping engine" in text
    for noisy in (" hpack", " h2.", " h2:", " httpcore", " hypercorn.", " asyncio:"):
        assert noisy not in text, noisy


def _assert_running(server: PyrestateServer, inv: str) -> None:
    r = httpx.post(
        f"{server.admin_url}/query",
        json={"query": f"SELECT status, journal_size FROM sys_invocation WHERE id = '{inv}'"},
        headers={"accept": "application/json"},
        timeout=10,
    )
    rows = r.json()["rows"]
    assert rows and rows[0]["status"] in ("running", "suspended") and int(rows[0]["journal_size"]) >= 3


def test_json_log_is_one_object_per_line(tmp_path: Path) -> None:
    server, app = _stack(tmp_path, "json-server", PYRESTATE_LOG_FORMAT="json")
    server.start()
    app.start()
    try:
        dep, inv = _fail_until_paused(server, app).split()
    finally:
        app.close()
        server.close()
    lines = [ln for ln in _log(server).splitlines() if ln.strip() and not ln.startswith("=====")]
    events: list[dict[str, Any]] = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert all({"timestamp", "level", "logger", "message"} <= e.keys() for e in events)
    registered = next(e for e in events if e["message"] == "Deployment registered")
    assert registered["deployment_id"] == dep
    assert set(registered["services"].split(",")) == {"Cart", "Failer", "Sleepy"}
    retries = [e for e in events if e["message"].startswith("Invocation error, retrying in")]
    assert [e["attempt"] for e in retries] == [1, 2]
    first = retries[0]
    assert first["level"] == "WARNING" and first["logger"] == "pyrestate.invocation"
    assert first["invocation_id"] == inv and first["target"] == "Failer/boom"
    assert first["retry_in"] == "100ms" and first["deployment_id"] == dep
    assert first["error"] == "[500] ValueError('boom for x')"
    assert "ValueError: boom for x" in first["stacktrace"]
    paused = next(e for e in events if "pausing it" in e["message"])
    assert paused["attempt"] == 3 and paused["invocation_id"] == inv
    stop = next(e for e in events if e["message"].startswith("Received SIGTERM"))
    assert stop["signal"] == "SIGTERM" and stop["in_flight"] == 0


def test_filter_and_formats_in_process() -> None:
    assert logs.parse_filter("warning, hypercorn=debug,h2=info") == (
        "warning",
        {"hypercorn": "debug", "h2": "info"},
    )
    for bad in ("loud", "hypercorn=loud", "=info"):
        with pytest.raises(logs.LogConfigError):
            logs.parse_filter(bad)
    buf = io.StringIO()
    # configure() changes process-wide logging: put back what pytest had installed.
    names = ["", "pyrestate", "hpack", "hypercorn.error", "hypercorn.access"]
    saved = [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in map(logging.getLogger, names)]
    try:
        logs.configure("info", "text", "hpack=debug", stream=buf)
        logging.getLogger("h2.connection").debug("hidden")
        logging.getLogger("hpack.table").debug("shown on request")
        logs.event(logging.getLogger("pyrestate.t"), logging.INFO, "hello", key="a b", none=None)
        logging.getLogger("pyrestate.t").debug("below the level")
    finally:
        logging.captureWarnings(False)
        for lg, level, propagate, handlers in saved:
            lg.setLevel(level)
            lg.propagate = propagate
            lg.handlers[:] = handlers
    out = buf.getvalue()
    assert "hidden" not in out and "below the level" not in out
    assert "DEBUG hpack.table: shown on request" in out
    assert 'INFO pyrestate.t: hello key="a b"\n' in out
    assert [logs.duration(ms) for ms in (500, 1500, 125_000)] == ["500ms", "1.5s", "2m 5s"]
