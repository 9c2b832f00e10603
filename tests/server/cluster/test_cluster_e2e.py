"""`pyrestate server --workers 2` through real processes: calls, sends, awakeables, workflow promises and
kills crossing partitions that live in different worker processes; `/query` over both workers' files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from cluster_support import Stack, keys_on, query, wait_for, worker_of_key

JSON = {"content-type": "application/json"}


def test_keys_of_both_workers_exist() -> None:
    assert {worker_of_key(k) for k in keys_on(0, 3, "a") + keys_on(1, 3, "a")} == {0, 1}


def test_service_object_service_chain_across_workers(stack: Stack) -> None:
    for key in keys_on(0, 3, "chain") + keys_on(1, 3, "chain"):
        for n in (1, 2):
            r = stack.ingress.post("/Front/chain_to", json=key)
            assert r.status_code == 200, r.text
            assert r.json() == f"leaf:{key}:x:{n}"


def test_sends_and_delayed_sends_reach_objects_on_both_workers(stack: Stack) -> None:
    keys = keys_on(0, 4, "fan") + keys_on(1, 4, "fan")
    for _ in range(3):
        r = stack.ingress.post("/Front/fan_add", json=keys)
        assert r.status_code == 200, r.text

    def all_done() -> bool:
        return all(stack.ingress.post(f"/Acc/{k}/get").json() == 33 for k in keys)

    wait_for(all_done, 30, "every object to count 3 sends and 3 delayed sends")


def test_awakeables_completed_through_any_worker(stack: Stack) -> None:
    tags = [f"awk{i}" for i in range(6)]
    ids = {}
    for tag in tags:
        r = stack.ingress.post("/Front/await_awakeable/send", json=tag, headers={"idempotency-key": tag})
        assert r.status_code == 202, r.text
        ids[tag] = r.json()["invocationId"]
    for tag in tags:
        path = stack.side_file.parent / f"awakeable-{tag}"
        wait_for(path.exists, 30, f"awakeable {tag}")
        # A fresh connection each time: the kernel spreads them over the workers, owners or not.
        with httpx.Client(base_url=stack.server.ingress_url, timeout=30) as fresh:
            r = fresh.post(f"/restate/awakeables/{path.read_text()}/resolve", json=f"v-{tag}")
            assert r.status_code == 202, r.text
    for tag in tags:
        with httpx.Client(base_url=stack.server.ingress_url, timeout=30) as fresh:
            r = fresh.get(f"/restate/invocation/{ids[tag]}/attach")
            assert r.status_code == 200, r.text
            assert r.json() == f"got v-{tag}"


def test_workflow_promise_resolved_through_any_worker(stack: Stack) -> None:
    keys = keys_on(0, 2, "wf") + keys_on(1, 2, "wf")
    for key in keys:
        r = stack.ingress.post(f"/Flow/{key}/run/send", json="order")
        assert r.status_code == 202, r.text
    for key in keys:
        with httpx.Client(base_url=stack.server.ingress_url, timeout=30) as fresh:
            r = fresh.post(f"/Flow/{key}/approve", json=f"boss-{key}")
            assert r.status_code == 200, r.text
    for key in keys:
        with httpx.Client(base_url=stack.server.ingress_url, timeout=30) as fresh:
            r = fresh.get(f"/restate/workflow/Flow/{key}/attach")
            assert r.status_code == 200, r.text
            assert r.json() == f"order approved by boss-{key}"


def _statuses(stack: Stack, ids: list[str]) -> dict[str, str]:
    listed = ", ".join(f"'{i}'" for i in ids)
    rows = query(stack.server.admin_url, f"SELECT id, status FROM sys_invocation WHERE id IN ({listed})")
    return {r["id"]: r["status"] for r in rows}


def test_kill_of_a_call_tree_spanning_workers(stack: Stack) -> None:
    for key in keys_on(0, 1, "tree") + keys_on(1, 1, "tree"):
        r = stack.ingress.post("/Front/tree/send", json=key)
        assert r.status_code == 202, r.text
        root = r.json()["invocationId"]

        def tree_ids(root: str = root) -> list[str] | None:
            rows = query(
                stack.server.admin_url,
                "SELECT id, target_service_name FROM sys_invocation WHERE status <> 'completed' "
                f"AND (id = '{root}' OR invoked_by_id IS NOT NULL)",
            )
            services = {r["target_service_name"]: r["id"] for r in rows}
            return list(services.values()) if {"Front", "Acc", "Leaf"} <= services.keys() else None

        ids = wait_for(tree_ids, 30, "the call tree Front -> Acc -> Leaf")
        r = stack.admin.delete(f"/invocations/{root}", params={"mode": "kill"})
        assert r.status_code in (200, 202), r.text
        wait_for(
            lambda ids=ids: set(_statuses(stack, ids).values()) <= {"completed"},
            30,
            "every invocation of the tree to end",
        )
        # The object key is free again: an exclusive handler runs on it.
        assert stack.ingress.post(f"/Acc/{key}/add", json=5).status_code == 200


def test_query_and_admin_see_both_workers(stack: Stack) -> None:
    keys = keys_on(0, 2, "q") + keys_on(1, 2, "q")
    for key in keys:
        assert stack.ingress.post(f"/Acc/{key}/add", json=7).status_code == 200
    listed = ", ".join(f"'{k}'" for k in keys)
    rows = query(
        stack.server.admin_url,
        "SELECT service_key FROM state WHERE service_name = 'Acc' AND key = 'total' "
        f"AND service_key IN ({listed})",
    )
    assert sorted(r["service_key"] for r in rows) == sorted(keys)
    # Schema is the same through every worker (fresh connections land on either).
    for _ in range(6):
        with httpx.Client(base_url=stack.server.admin_url, timeout=30) as fresh:
            names = {s["name"] for s in fresh.get("/services").json()["services"]}
            assert {"Front", "Acc", "Leaf", "Flow"} <= names


def test_other_number_of_workers_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "layout.json").write_text(json.dumps({"partitions": 4, "workers": 2, "ranges": [[0, 2], [2, 4]]}))
    for extra in (["--workers", "3"], []):
        out = subprocess.run(
            [
                *(sys.executable, "-m", "pyrestate.cli.main", "server", "--data-dir", str(data)),
                *("--partitions", "4", "--ingress-bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0"),
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2, out.stderr
        assert "created with --workers 2" in out.stderr


def test_console_shows_both_workers(stack: Stack) -> None:
    keys = keys_on(0, 1, "ui") + keys_on(1, 1, "ui")
    for key in keys:
        assert stack.ingress.post(f"/Acc/{key}/add", json=41).status_code == 200
    for key in keys:
        r = stack.admin.get(f"/ui/state/Acc/{key}")
        assert r.status_code == 200, r.text
        assert "41" in r.text
    r = stack.admin.get("/ui/invocations")
    assert r.status_code == 200
    assert "Acc" in r.text
