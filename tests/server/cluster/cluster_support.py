"""A `pyrestate server --workers N` process with the official-SDK services of cluster_app.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pyrestate.protocol.ids import partition_key_for_key
from pyrestate.server.cluster.layout import Layout
from pyrestate.server.partition.context import partition_of_key
from pyrestate.testing import PyrestateServer, RuntimeConfig, ServiceApp

HERE = Path(__file__).parent
PARTITIONS = 4  # PyrestateServer's default


def server(tmp: Path, workers: int = 2) -> PyrestateServer:
    cfg = RuntimeConfig(
        retry_initial_interval="100ms",
        retry_max_interval="1s",
        inactivity_timeout="5s",
        abort_timeout="5s",
        extra_env={"PYRESTATE_WORKERS": str(workers)},
    )
    return PyrestateServer(cfg, data_dir=tmp / "server", log_dir=tmp)


def service_app(tmp: Path, side_file: Path) -> ServiceApp:
    return ServiceApp(
        "cluster_app:app",
        env={"CLUSTER_SIDE_FILE": str(side_file)},
        log_dir=tmp,
        cwd=HERE,
        pythonpath=[HERE],
    )


def worker_of_key(key: str, workers: int = 2) -> int:
    return Layout(PARTITIONS, workers).owners()[partition_of_key(partition_key_for_key(key), PARTITIONS)]


def keys_on(worker: int, n: int, prefix: str, workers: int = 2) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        key = f"{prefix}{i}"
        if worker_of_key(key, workers) == worker:
            out.append(key)
        i += 1
    return out


def worker_pids(parent_pid: int) -> list[int]:
    children = Path(f"/proc/{parent_pid}/task/{parent_pid}/children").read_text().split()
    return sorted(int(c) for c in children)


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def query(admin_url: str, sql: str) -> list[dict[str, Any]]:
    accept = {"accept": "application/json"}
    r = httpx.post(f"{admin_url}/query", json={"query": sql}, headers=accept, timeout=30)
    r.raise_for_status()
    rows: list[dict[str, Any]] = json.loads(r.content)["rows"]
    return rows


@dataclass
class Stack:
    server: PyrestateServer
    app: ServiceApp
    side_file: Path
    ingress: httpx.Client
    admin: httpx.Client
