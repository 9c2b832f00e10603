"""Concurrency-limit rules on `pyrestate server --workers 2`: the rule book is one, whichever worker a
request reaches (changes go through worker 0 and are pushed to every worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cluster_support import query

from pyrestate.testing import PyrestateServer, RuntimeConfig


@pytest.fixture
def vq_server(tmp_path: Path) -> Iterator[PyrestateServer]:
    cfg = RuntimeConfig(extra_env={"PYRESTATE_WORKERS": "2", "PYRESTATE_EXPERIMENTAL_ENABLE_VQUEUES": "true"})
    srv = PyrestateServer(cfg, data_dir=tmp_path / "server", log_dir=tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_every_worker_sees_one_rule_book(vq_server: PyrestateServer) -> None:
    for n in range(1, 9):
        # A fresh connection each time: the kernel spreads them over both workers.
        with httpx.Client(base_url=vq_server.admin_url, timeout=30) as admin:
            r = admin.put("/limits/rules", json=[{"pattern": "s", "limits": {"concurrency": n}}])
            assert r.status_code == 200, r.text
            assert r.json()[0]["version"] == n
            assert r.json()[0]["limits"] == {"concurrency": n}
            # A precondition on the previous version fails wherever it lands.
            stale = {
                "pattern": "s",
                "limits": {"concurrency": 1},
                "precondition": {"type": "matches", "version": n - 1},
            }
            r = admin.put("/limits/rules", json=[stale])
            assert r.status_code == 409, r.text
    assert query(vq_server.admin_url, "SELECT pattern, version FROM sys_rules") == [
        {"pattern": "s", "version": 8}
    ]
