"""A real pyrestate server process and an official-SDK deployment, then the CLI's SQL over `/v4/query`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited early:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready:\n{log.read_text()}")


@contextlib.contextmanager
def _process(args: list[str], log: Path, ready: str, stop: signal.Signals, **kw: Any) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, **kw)
    try:
        _wait_ready(ready, proc, log)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    tmp = tmp_path_factory.mktemp("query-e2e")
    sdk_port, ingress_port, admin_port = _free_port(), _free_port(), _free_port()
    sdk_url = f"http://127.0.0.1:{sdk_port}"
    with (
        _process(
            [sys.executable, "-m", "hypercorn", "query_sdk_app:app", "--bind", f"127.0.0.1:{sdk_port}"],
            tmp / "sdk.log",
            f"{sdk_url}/health",
            signal.SIGINT,  # the SDK's SIGTERM hook keeps hypercorn alive
            cwd=HERE,
        ),
        _process(
            [
                sys.executable,
                "-m",
                "pyrestate.cli.main",
                "server",
                "--data-dir",
                str(tmp / "data"),
                "--ingress-bind",
                f"127.0.0.1:{ingress_port}",
                "--admin-bind",
                f"127.0.0.1:{admin_port}",
                "--partitions",
                "4",
            ],
            tmp / "server.log",
            f"http://127.0.0.1:{admin_port}/health",
            signal.SIGTERM,
            env={**os.environ},
        ),
    ):
        admin = f"http://127.0.0.1:{admin_port}"
        r = httpx.post(f"{admin}/v4/deployments", json={"uri": sdk_url}, timeout=30)
        assert r.status_code == 201, r.text
        yield f"http://127.0.0.1:{ingress_port}", admin


def _json(admin: str, sql: str) -> list[dict[str, Any]]:
    r = httpx.post(
        f"{admin}/v4/query", json={"query": sql}, headers={"accept": "application/json"}, timeout=30
    )
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["rows"]
    return rows


def test_query_a_live_server(server: tuple[str, str]) -> None:
    ingress, admin = server
    for _ in range(2):
        assert httpx.post(f"{ingress}/Counter/c1/add", json=5, timeout=30).json() in (5, 10)
    sent = httpx.post(f"{ingress}/Waiter/w1/wait/send", timeout=30)
    assert sent.status_code == 202, sent.text
    waiting_id = sent.json()["invocationId"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = _json(admin, f"SELECT status FROM sys_invocation WHERE id = '{waiting_id}'")
        if (
            rows
            and rows[0]["status"] in ("running", "suspended")
            and _json(
                admin,
                f"SELECT index FROM sys_journal WHERE id = '{waiting_id}' AND entry_type = 'Command: Sleep'",
            )
        ):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the waiter never got to its sleep: {rows}")

    kv = _json(admin, "select key, value from state where service_name = 'Counter' and service_key = 'c1' ;")
    assert kv == [{"key": "count", "value": b"10".hex()}]
    done = _json(
        admin,
        "SELECT target, status, completion_result, journal_size, pinned_deployment_id FROM sys_invocation "
        "WHERE target_service_name = 'Counter' ORDER BY created_at",
    )
    assert [d["status"] for d in done] == ["completed", "completed"]
    assert all(
        d["completion_result"] == "success" and d["pinned_deployment_id"].startswith("dp_") for d in done
    )
    journal = _json(
        admin, f"SELECT entry_type, name FROM sys_journal WHERE id = '{waiting_id}' ORDER BY index"
    )
    types = [j["entry_type"] for j in journal]
    assert types[0] == "Command: Input" and "Command: Run" in types and "Command: SetState" in types
    assert {"entry_type": "Command: Run", "name": "noted"} in journal
    # every entry carries the time the partition appended it, in journal order (as restate-server fills it)
    times = _json(admin, f"SELECT appended_at FROM sys_journal WHERE id = '{waiting_id}' ORDER BY index")
    stamps = [t["appended_at"] for t in times]
    assert all(isinstance(t, str) and t.endswith("Z") for t in stamps), stamps
    assert stamps == sorted(stamps)
    lock = _json(admin, "SELECT invocation_id FROM sys_keyed_service_status WHERE service_name = 'Waiter'")
    assert lock == [{"invocation_id": waiting_id}]
    r = httpx.post(
        f"{admin}/v4/query",
        json={
            "query": "SELECT COUNT(1) FROM (SELECT * FROM sys_invocation inv LIMIT 50000) WHERE status != 'x'"
        },
        timeout=30,
    )
    assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert pa.ipc.open_stream(r.content).read_all().to_pylist() == [{"count(Int64(1))": 3}]
    r = httpx.post(f"{admin}/v4/query", json={"query": "SELEC 1"}, timeout=30)
    assert r.status_code == 400
