"""Chaos counter (after restate's cluster chaos test): `FaultsCounter/1/add` with idempotency-key = the number
of acknowledged successes, ambiguous failures retried with the same key, while the nemesis kill -9s, SIGTERMs
and SIGSTOP/SIGCONTs the server and the service process. Every response must equal the number of
acknowledged successes: a smaller one is a lost acknowledged increment, a larger one a double application.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from faults_env import SDKS, SEED, call_until_ok, duration, fault_env, summary

from pyrestate.testing.faults import Nemesis

RECOVERY = 60.0  # the longest one key may take to be acknowledged, faults included


@pytest.mark.parametrize("sdk", SDKS)
def test_chaos_counter(sdk: str, tmp_path: Path) -> None:
    run_for = duration(20.0)
    with fault_env(sdk, tmp_path) as env:
        url = f"{env.ingress_url}/FaultsCounter/1/add"
        nemesis = Nemesis(env.targets(), seed=SEED, interval=(1.0, 3.0))
        acked = lost = duplicated = 0
        outcomes: Counter[str] = Counter()
        wrong: list[str] = []
        client = httpx.Client(timeout=5.0)
        nemesis.start()
        try:
            deadline = time.monotonic() + run_for
            while time.monotonic() < deadline:
                key, began = str(acked), time.monotonic()
                while True:
                    try:
                        r = client.post(url, json=1, headers={"idempotency-key": key})
                        if r.status_code == 200:
                            outcomes["ok"] += 1
                            break
                        outcomes[str(r.status_code)] += 1
                    except httpx.TransportError as e:
                        outcomes[type(e).__name__] += 1
                        client.close()
                        client = httpx.Client(timeout=5.0)  # no pooled socket to a dead process
                    assert time.monotonic() - began < RECOVERY, (
                        f"key {key} not acknowledged within {RECOVERY}s; {dict(outcomes)}\n{env.log_tails()}"
                    )
                    time.sleep(0.05)
                value = r.json()
                if value != acked + 1:
                    wrong.append(f"key {key}: answered {value}, expected {acked + 1}")
                    if value < acked + 1:
                        lost += acked + 1 - value
                    else:
                        duplicated += value - acked - 1
                acked += 1
        finally:
            client.close()
            nemesis.stop()
        final = call_until_ok(f"{env.ingress_url}/FaultsCounter/1/get", None)
        if final < acked:
            lost = max(lost, acked - final)
        elif final > acked:
            duplicated = max(duplicated, final - acked)
        summary(
            f"chaos-counter sdk={sdk} seed={SEED} acknowledged={acked} crashes={nemesis.crashes} "
            f"lost={lost} duplicated={duplicated} final={final} faults=[{nemesis.summary()}] "
            f"attempts={dict(outcomes)}"
        )
        assert not nemesis.errors, nemesis.errors
        assert not wrong, wrong[:20]
        assert lost == 0 and duplicated == 0
        assert final == acked
        assert acked > 0 and nemesis.crashes > 0
