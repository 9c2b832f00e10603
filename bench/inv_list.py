"""Latency of the official CLI's `restate invocations list`, and of the `/query` POSTs it sends, warm.

    .venv/bin/python -m bench.inv_list [--servers pyrestate,official] [--runs 20] [--completed 40]

Per server: a fresh data dir on free loopback ports, tests/cli/ops_app.py registered, `--completed`
finished invocations (Greeter/greet) and 3 open ones (Waiter/wait, blocked on an awakeable). Then
`restate inv list` is run 3 times (warm-up) and `--runs` times measured; and each of the queries the CLI
sends is POSTed `--runs` times on one kept-alive connection with the CLI's headers. Medians in ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from pyrestate.testing import ServiceApp, find_project_root, register_deployment
from pyrestate.testing.runtime import OfficialRestateServer, PyrestateServer

ROOT = find_project_root(Path(__file__).parent) or Path.cwd()
CLI = ROOT / ".cache/restate/node_modules/@restatedev/restate-linux-x64/bin/restate"
APP_DIR = ROOT / "tests" / "cli"

# What `restate inv list` sends (tests/captures/cli-admin-requests.txt, #12-#14), ids filled in later.
COUNT_SQL = """SELECT COUNT(1) FROM (SELECT
            *
        FROM sys_invocation inv
        LIMIT 50000
        )
        WHERE status != 'completed'"""
IDS_SQL = """SELECT
            id
        FROM sys_invocation inv
        WHERE status != 'completed'
        ORDER BY inv.created_at DESC, inv.id
        LIMIT 100"""
DETAIL_SQL = """SELECT
            inv.id,
            inv.target,
            inv.target_service_ty,
            inv.idempotency_key,
            inv.status,
            inv.created_at,
            inv.modified_at as state_modified_at,
            inv.pinned_deployment_id,
            inv.retry_count as num_retries,
            inv.last_failure as last_failure_message,
            inv.last_failure_related_entry_index as last_failure_entry_index,
            inv.last_failure_related_entry_name as last_failure_entry_name,
            inv.last_failure_related_entry_type as last_failure_entry_ty,
            inv.last_attempt_deployment_id,
            inv.last_attempt_server,
            inv.next_retry_at,
            inv.last_start_at,
            inv.invoked_by_id,
            inv.invoked_by_target,
            inv.trace_id,
            inv.completion_result,
            inv.completion_failure,
            dp.id IS NOT NULL as pinned_deployment_exists
        FROM sys_invocation inv
        LEFT JOIN sys_deployment dp ON dp.id = inv.pinned_deployment_id
        WHERE status != 'completed' AND inv.id in ({ids})
        ORDER BY inv.created_at DESC, inv.id"""


def _cli_env(admin_url: str, ingress_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTATE_")}
    env.update(
        HOME=str(home),
        RESTATE_CLI_CONFIG_HOME=str(home / "config"),
        RESTATE_ADMIN_URL=admin_url,
        RESTATE_INGRESS_URL=ingress_url,
        NO_COLOR="1",
        TERM="dumb",
        COLUMNS="200",
    )
    return env


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def _populate(ingress_url: str, completed: int) -> list[str]:
    with httpx.Client(base_url=ingress_url, timeout=30) as c:
        for i in range(completed):
            r = c.post("/Greeter/greet", json=f"n{i}")
            assert r.status_code == 200, r.text
        open_ids = []
        for i in range(3):
            r = c.post(f"/Waiter/w{i}/wait/send")
            assert r.status_code == 202, r.text
            open_ids.append(r.json()["invocationId"])
    return open_ids


def _wait_open(admin_url: str, n: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = httpx.post(
            f"{admin_url}/query",
            json={"query": "SELECT count(*) AS n FROM sys_journal"},
            headers={"accept": "application/json"},
        )
        if r.status_code == 200 and r.json()["rows"][0]["n"] >= n:
            return
        time.sleep(0.1)


def measure(kind: str, runs: int, completed: int, tmp: Path) -> dict[str, Any]:
    server: OfficialRestateServer | PyrestateServer = (
        OfficialRestateServer(data_dir=tmp / kind, log_dir=tmp)
        if kind == "official"
        else PyrestateServer(data_dir=tmp / kind, log_dir=tmp)
    )
    app = ServiceApp("ops_app:app", log_dir=tmp, cwd=APP_DIR, pythonpath=[APP_DIR])
    server.start()
    try:
        app.start()
        register_deployment(server.admin_url, app.url)
        _populate(server.ingress_url, completed)
        _wait_open(server.admin_url, 3 * 3)  # input + get/set/run entries of each waiting invocation
        home = tmp / f"home-{kind}"
        env = _cli_env(server.admin_url, server.ingress_url, home)
        cli_times: list[float] = []
        for i in range(3 + runs):
            t0 = time.perf_counter()
            out = subprocess.run(
                [str(CLI), "inv", "list"], env=env, capture_output=True, text=True, timeout=60, check=True
            )
            if i >= 3:
                cli_times.append(time.perf_counter() - t0)
        assert "Waiter" in out.stdout, out.stdout
        per_query: dict[str, float] = {}
        with httpx.Client(base_url=server.admin_url, timeout=30) as c:
            ids = [
                r["id"]
                for r in c.post(
                    "/query", json={"query": IDS_SQL}, headers={"accept": "application/json"}
                ).json()["rows"]
            ]
            detail = DETAIL_SQL.format(ids=",".join(f"'{i}'" for i in ids))
            for name, sql, accept in (
                ("count (arrow)", COUNT_SQL, "*/*"),
                ("ids (json)", IDS_SQL, "application/json"),
                ("detail (json)", detail, "application/json"),
                ("select 1 (json)", "SELECT 1", "application/json"),
            ):
                times = []
                for i in range(3 + runs):
                    t0 = time.perf_counter()
                    r = c.post("/query", json={"query": sql}, headers={"accept": accept})
                    elapsed = time.perf_counter() - t0
                    assert r.status_code == 200, r.text
                    if i >= 3:
                        times.append(elapsed)
                per_query[name] = _median_ms(times)
        return {"inv list": _median_ms(cli_times), **per_query}
    finally:
        app.stop()
        server.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--servers", default="pyrestate,official")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--completed", type=int, default=40)
    args = p.parse_args()
    if not CLI.is_file():
        sys.exit(f"official CLI not found at {CLI} (make official-restate)")
    with tempfile.TemporaryDirectory(prefix="bench-invlist-") as d:
        results = {}
        for kind in args.servers.split(","):
            results[kind] = measure(kind, args.runs, args.completed, Path(d))
    keys = list(next(iter(results.values())))
    print(f"{'median ms':<18}" + "".join(f"{k:>12}" for k in results))
    for key in keys:
        print(f"{key:<18}" + "".join(f"{results[k][key]:>12}" for k in results))


if __name__ == "__main__":
    main()
