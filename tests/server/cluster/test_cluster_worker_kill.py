"""`--workers 2` with workers killed by SIGKILL mid-flight: four clients send invocations whose steps call
objects on both workers while a random worker is killed every 0.4-1.2 s. The parent restarts each from its
file; every acknowledged invocation completes, every object counts each call once (exactly-once delivery
between workers), and no `ctx.run` step has two recorded results."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
from cluster_support import keys_on, server, service_app, wait_for, worker_pids

from pyrestate.testing import register_deployment

RETRYABLE = (httpx.TransportError, httpx.TimeoutException)


def _post(
    client: httpx.Client, path: str, body: object, headers: dict[str, str], until: float
) -> httpx.Response:
    """Retry ambiguous failures (connection cut by a kill, 5xx) with the same idempotency key."""
    while True:
        try:
            r = client.post(path, json=body, headers=headers)
            if r.status_code < 500:
                return r
        except RETRYABLE:
            pass
        if time.monotonic() > until:
            raise AssertionError(f"{path} did not succeed in time")
        time.sleep(0.1)


def _kill_worker(parent: int, index: int) -> None:
    before = worker_pids(parent)
    victim = before[index]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(worker_pids(parent)) == 2 and victim not in worker_pids(parent), 30, "a restart")


def test_sigkill_of_workers_mid_flight(tmp_path: Path) -> None:
    side = tmp_path / "side"
    srv = server(tmp_path)
    app = service_app(tmp_path, side)
    srv.start()
    try:
        app.start()
        register_deployment(srv.admin_url, app.url)
        pid = srv.process.pid
        assert pid is not None and len(worker_pids(pid)) == 2
        tags = keys_on(0, 3, "k") + keys_on(1, 3, "k")
        n = 80
        until = time.monotonic() + 150
        ids: dict[str, str] = {}

        def sender(part: int) -> None:
            with httpx.Client(base_url=srv.ingress_url, timeout=30) as client:
                for i in range(part, n, 4):
                    ikey = f"steps-{i}"
                    r = _post(
                        client, "/Front/steps/send", tags[i % len(tags)], {"idempotency-key": ikey}, until
                    )
                    assert r.status_code in (200, 202), r.text
                    ids[ikey] = r.json()["invocationId"]
                    time.sleep(0.05)

        senders = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for t in senders:
            t.start()
        kills = 0
        rng = random.Random(7)
        while any(t.is_alive() for t in senders) or kills < 3:
            time.sleep(rng.uniform(0.4, 1.2))
            _kill_worker(pid, rng.randrange(2))  # with calls between the workers in flight
            kills += 1
        for t in senders:
            t.join()
        assert len(ids) == n
        print(f"{n} invocations acknowledged, {kills} workers killed")
        with httpx.Client(base_url=srv.ingress_url, timeout=30) as client:
            for ikey, iid in ids.items():
                while True:
                    try:
                        r = client.get(f"/restate/invocation/{iid}/attach")
                        if r.status_code == 200:
                            break
                        assert r.status_code >= 500, r.text
                    except RETRYABLE:
                        pass
                    assert time.monotonic() < until, f"{ikey} did not complete:\n{srv.log_tail()}"
                    time.sleep(0.2)
            expected: dict[str, int] = defaultdict(int)
            for i in range(n):
                expected[tags[i % len(tags)]] += 3
            for tag, count in expected.items():
                assert client.post(f"/Acc/{tag}/get").json() == count, tag
        executed: dict[str, set[str]] = defaultdict(set)
        seen: dict[str, set[str]] = defaultdict(set)
        for line in side.read_text().splitlines():
            kind, token, result = line.split()
            (executed if kind == "exec" else seen)[token].add(result)
        assert len(seen) == 3 * n
        for token, results in seen.items():
            assert len(results) == 1, f"step {token} recorded twice: {results}"
            assert results <= executed[token]
    except BaseException:
        print(srv.log_tail(200))
        raise
    finally:
        app.close()
        srv.close()
