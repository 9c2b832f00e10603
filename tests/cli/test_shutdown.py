"""Ctrl-C (SIGINT) and SIGTERM on `pyrestate server`, `pyrestate serve` and `pyrestate dev` with handlers
mid-sleep and waiting on an awakeable: one line, no tracebacks, a bounded stop, and the invocations resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cli_support import HERE

from pyrestate.testing import PyrestateServer, ServiceApp, eventually, free_port, register_deployment

STOP_BOUND_S = 8.0
NAP_S = 3


def _query(admin_url: str, sql: str) -> list[dict[str, object]]:
    r = httpx.post(
        f"{admin_url}/query", json={"query": sql}, headers={"accept": "application/json"}, timeout=10
    )
    assert r.status_code == 200, r.text
    rows: list[dict[str, object]] = r.json()["rows"]
    return rows


def _status(admin_url: str, inv: str) -> dict[str, object]:
    rows = _query(admin_url, f"SELECT status, journal_size FROM sys_invocation WHERE id = '{inv}'")
    assert rows, inv
    return rows[0]


def _started(admin_url: str, inv: str, entries: int) -> None:
    row = _status(admin_url, inv)
    assert row["status"] in ("running", "suspended") and int(str(row["journal_size"])) >= entries, row


def _start_two(ingress_url: str, admin_url: str) -> tuple[str, str]:
    """One invocation sleeping NAP_S seconds, one waiting on an awakeable, both well under way."""
    napping = httpx.post(f"{ingress_url}/Sleepy/a/nap/send", json=NAP_S, timeout=10).json()["invocationId"]
    waiting = httpx.post(f"{ingress_url}/Sleepy/b/wait/send", timeout=10).json()["invocationId"]
    eventually(lambda: _started(admin_url, napping, 2), timeout=20)
    eventually(lambda: _started(admin_url, waiting, 3), timeout=20)
    return napping, waiting


def _clean(text: str) -> None:
    for bad in ("Traceback", "never awaited", "ExceptionGroup", "Task was destroyed"):
        assert bad not in text, f"{bad!r} in output:\n{text}"


def _resolve_awakeable(server: PyrestateServer) -> None:
    sql = "SELECT value_utf8 FROM state WHERE service_name = 'Sleepy' AND key = 'awakeable'"
    rows = _query(server.admin_url, sql)
    awakeable = json.loads(str(rows[0]["value_utf8"]))
    r = httpx.post(f"{server.ingress_url}/restate/awakeables/{awakeable}/resolve", json="done", timeout=10)
    assert r.status_code == 202, r.text


def _output(server: PyrestateServer, inv: str) -> object:
    r = httpx.get(f"{server.ingress_url}/restate/invocation/{inv}/output", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_server_stops_in_one_line_and_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    server = PyrestateServer(data_dir=tmp_path / "server", log_dir=tmp_path)
    app = ServiceApp("first_day_app:app", log_dir=tmp_path, cwd=HERE, pythonpath=[HERE])
    server.start()
    app.start()
    try:
        register_deployment(server.admin_url, app.url)
        napping, waiting = _start_two(server.ingress_url, server.admin_url)
        before = len(server.log_path.read_text())
        started = time.monotonic()
        server.process.stop(sig, timeout=30)
        elapsed = time.monotonic() - started
        assert server.process.returncode == 0
        assert elapsed < STOP_BOUND_S, elapsed
        stop_text = server.log_path.read_text()[before:]
        _clean(stop_text)
        stop_lines = [ln for ln in stop_text.splitlines() if " INFO " in ln or " WARNING " in ln]
        assert len(stop_lines) == 1, stop_text
        assert f"Received {sig.name}, shutting down: 2 invocation(s) in flight will resume" in stop_lines[0]

        time.sleep(NAP_S + 0.5)  # the sleep comes due while the server is down
        server.start()
        eventually(lambda: _assert_completed(server, napping), timeout=20)
        assert _output(server, napping) == "rested"
        _resolve_awakeable(server)
        eventually(lambda: _assert_completed(server, waiting), timeout=20)
        assert _output(server, waiting) == "done"
        text = server.log_path.read_text()
        assert "resuming 2 invocation(s) that were in flight" in text
        assert "1 timer(s) fired late" in text and f"invocation_id={napping}" in text
        _clean(text)
    finally:
        app.close()
        server.close()


def _assert_completed(server: PyrestateServer, inv: str) -> None:
    assert _status(server.admin_url, inv)["status"] == "completed"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_within_grace_with_streams_open(tmp_path: Path, sig: signal.Signals) -> None:
    server = PyrestateServer(data_dir=tmp_path / "server", log_dir=tmp_path)
    server.start()
    port = free_port()
    bind = f"127.0.0.1:{port}"
    out = tmp_path / "serve.out"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyrestate.cli.main", "serve", "first_day_app:app", "--bind", bind],
            cwd=HERE,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        eventually(lambda: _assert_answers(f"http://127.0.0.1:{port}/health"), timeout=30)
        register_deployment(server.admin_url, f"http://127.0.0.1:{port}")
        _start_two(server.ingress_url, server.admin_url)
        started = time.monotonic()
        os.kill(proc.pid, sig)
        assert proc.wait(STOP_BOUND_S) == 0
        assert time.monotonic() - started < STOP_BOUND_S
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        server.close()
    text = out.read_text()
    _clean(text)
    assert "Lifespan error" not in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 2, text  # the start line and the stop line
    assert "Serving first_day_app:app on" in lines[0]
    assert (
        f"Received {sig.name}, stopping first_day_app:app: 2 invocation(s) in flight; the server retries them"
        in lines[1]
    )


def _assert_answers(url: str) -> None:
    try:
        httpx.get(url, timeout=1)
    except httpx.TransportError as e:
        raise AssertionError(str(e)) from None


def test_dev_stops_in_one_line(tmp_path: Path) -> None:
    ingress, admin, app = free_port(), free_port(), free_port()
    out = tmp_path / "dev.out"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyrestate.cli.main",
                "dev",
                "first_day_app:app",
                "--data-dir",
                str(tmp_path / "dev-data"),
                "--ingress-port",
                str(ingress),
                "--admin-port",
                str(admin),
                "--app-port",
                str(app),
            ],
            cwd=HERE,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, COLUMNS="200"),
            start_new_session=True,
        )
    try:
        eventually(lambda: _assert_in("Ready.", out.read_text()), timeout=60)
        _start_two(f"http://127.0.0.1:{ingress}", f"http://127.0.0.1:{admin}")
        ready_len = len(out.read_text())
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(2 * STOP_BOUND_S) == 0
        assert time.monotonic() - started < 2 * STOP_BOUND_S
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out.read_text()
    _clean(text)
    tail = [ln for ln in text[ready_len:].splitlines() if ln.strip()]
    assert tail == [
        "Stopping: 2 unfinished invocation(s) resume when `pyrestate dev` runs again on this data dir."
    ]
    server_log = (tmp_path / "dev-data" / "server.log").read_text()
    _clean(server_log)
    assert "Received SIGTERM, shutting down: 2 invocation(s) in flight will resume" in server_log


def _assert_in(needle: str, text: str) -> None:
    assert needle in text
