"""`pyrestate server --storage postgresql://…` with official-SDK services: calls, state and a sleep that
spans a kill -9 of the server; a standby node taking over from a stopping one."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from pyrestate.testing import Admin, Ingress, ServiceApp, eventually, json_of
from pyrestate.testing.postgres import PostgresServer
from pyrestate.testing.process import ManagedProcess, free_port, wait_until_answers

HERE = Path(__file__).parent


def _server(
    url: str, data_dir: Path, ingress: int, admin: int, name: str = "pyrestate-pg", wait_ready: bool = True
) -> ManagedProcess:
    return ManagedProcess(
        name,
        [
            sys.executable,
            "-c",
            "from pyrestate.cli.main import main; main()",
            "server",
            "--storage",
            url,
            "--data-dir",
            str(data_dir),
            "--partitions",
            "4",
            "--node-id",
            name,
            "--ingress-bind",
            f"127.0.0.1:{ingress}",
            "--admin-bind",
            f"127.0.0.1:{admin}",
        ],
        data_dir.parent / f"{name}.log",
        stop_signal=signal.SIGTERM,
        stop_timeout=10.0,
        ready_url=f"http://127.0.0.1:{ingress}/restate/health" if wait_ready else None,
        ready_timeout=30.0,
    )


def sleep_journaled(admin: Admin, invocation_id: str) -> None:
    """Wait until the invocation's Sleep command is recorded (its timer is stored in the same commit)."""

    def check() -> None:
        rows = admin.query(
            f"SELECT index FROM sys_journal WHERE id = '{invocation_id}' AND entry_type = 'Command: Sleep'"
        )
        assert rows, f"the sleep of {invocation_id} is not journaled yet"

    eventually(check, 20)


@pytest.fixture
def sdk_app() -> Iterator[ServiceApp]:
    app = ServiceApp("pg_e2e_app:app", pythonpath=[HERE], name="pg-e2e-sdk")
    app.start()
    try:
        yield app
    finally:
        app.close()


def test_calls_state_and_sleep_across_a_crash(
    pg_server: PostgresServer, tmp_path: Path, sdk_app: ServiceApp
) -> None:
    url = pg_server.create_database()
    ingress_port, admin_port = free_port(), free_port()
    server = _server(url, tmp_path / "data", ingress_port, admin_port)
    server.start()
    try:
        with Admin(f"http://127.0.0.1:{admin_port}") as admin:
            admin.register(sdk_app.url)
        with Ingress(f"http://127.0.0.1:{ingress_port}") as ingress:
            assert ingress.call_json("PgGreeter", "greet", "pg") == "hello pg"
            assert [ingress.call_json("PgCounter", "add", 2, key="c1") for _ in range(3)] == [2, 4, 6]
            sent = ingress.send_json("PgGreeter", "sleepy", 1500)
            with Admin(f"http://127.0.0.1:{admin_port}") as admin:
                sleep_journaled(admin, sent["invocationId"])  # and its timer stored: the kill is mid-sleep
            server.kill()  # kill -9: no lease handed back; the same node takes its leases over at once
            assert server.wait(10) is not None
            server.start()
            assert json_of(ingress.attach(sent["invocationId"])) == "slept"
            assert ingress.call_json("PgCounter", "get", key="c1") == 6
            assert ingress.call_json("PgCounter", "add", 1, key="c1") == 7
        with Admin(f"http://127.0.0.1:{admin_port}") as admin:
            rows = admin.query("SELECT status FROM sys_invocation WHERE target_service_name = 'PgGreeter'")
            assert sorted(r["status"] for r in rows) == ["completed", "completed"]
    finally:
        server.stop()
    assert not list((tmp_path / "data").glob("*.sqlite3"))  # nothing went to SQLite
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM state").fetchone() == (1,)
        epochs = conn.execute("SELECT DISTINCT epoch FROM partition_leases").fetchall()
        assert epochs == [(2,)]  # every partition changed hands once, at the restart


def test_a_standby_node_takes_over_when_the_active_one_stops(
    pg_server: PostgresServer, tmp_path: Path, sdk_app: ServiceApp
) -> None:
    url = pg_server.create_database()
    a_ingress, a_admin, b_ingress, b_admin = free_port(), free_port(), free_port(), free_port()
    a = _server(url, tmp_path / "a", a_ingress, a_admin, name="node-a")
    b = _server(url, tmp_path / "b", b_ingress, b_admin, name="node-b", wait_ready=False)
    a.start()
    try:
        a_admin_url = f"http://127.0.0.1:{a_admin}"
        with Admin(a_admin_url) as admin, Ingress(f"http://127.0.0.1:{a_ingress}") as ingress:
            admin.register(sdk_app.url)
            assert ingress.call_json("PgCounter", "add", 5, key="c") == 5
            # Long enough to outlast the standby's start: node-b must take over a pending timer.
            sent = ingress.send_json("PgGreeter", "sleepy", 4000)
            sleep_journaled(admin, sent["invocationId"])
        b.start()  # waits for the leases node-a holds: serves nothing meanwhile
        time.sleep(1.0)  # time passes, and node-b does not start serving while node-a holds the leases
        assert b.is_running()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{b_ingress}/restate/health", timeout=1)
        with Admin(a_admin_url) as admin:
            rows = admin.query(f"SELECT status FROM sys_invocation WHERE id = '{sent['invocationId']}'")
            assert [r["status"] for r in rows] == ["running"]  # mid-sleep (no inactivity timeout yet)
        a.stop()  # hands its leases back: node-b takes over, with the deployment, state and timer
        wait_until_answers(f"http://127.0.0.1:{b_ingress}/restate/health", 20, alive=b)
        with Ingress(f"http://127.0.0.1:{b_ingress}") as ingress:
            assert json_of(ingress.attach(sent["invocationId"])) == "slept"
            assert ingress.call_json("PgCounter", "add", 1, key="c") == 6
    finally:
        a.stop()
        b.stop()
    with psycopg.connect(url) as conn:
        owners = conn.execute("SELECT DISTINCT owner, epoch FROM partition_leases").fetchall()
        assert owners == [("node-b", 2)]
