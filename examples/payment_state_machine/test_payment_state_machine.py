"""End to end: payments and cancellations per token end consistently, racing or not; tokens expire."""

from __future__ import annotations

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from examples._harness import DeployFn, Deployment
from pyrestate.testing import eventually, json_of

EXPIRY_S = 2.0


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    return deploy("payment_state_machine", env={"PAYMENT_EXPIRY_MS": str(int(EXPIRY_S * 1000))})


def ids() -> tuple[str, str]:
    run = uuid.uuid4().hex[:8]
    return f"pay-{run}", f"acc-{run}"


def make(dep: Deployment, payment_id: str, account: str) -> str:
    return str(json_of(dep.ingress.call("payments", "makePayment", {"accountId": account, "amount": 100},
                                        key=payment_id)))


def cancel(dep: Deployment, payment_id: str) -> None:
    json_of(dep.ingress.call("payments", "cancelPayment", key=payment_id))


def status(dep: Deployment, payment_id: str) -> dict[str, Any]:
    result: dict[str, Any] = json_of(dep.ingress.call("payments", "getStatus", key=payment_id))
    return result


def balance(dep: Deployment, account: str) -> int:
    return sum(int(line.split()[2]) for line in dep.effects.matching(f"account {account} "))


def test_payment_then_cancellation_rolls_back(dep: Deployment) -> None:
    payment_id, account = ids()
    assert make(dep, payment_id, account) == f"{payment_id} was processed"
    assert make(dep, payment_id, account) == f"{payment_id} previously completed"
    assert balance(dep, account) == -100
    cancel(dep, payment_id)
    cancel(dep, payment_id)
    assert status(dep, payment_id) == {"status": "CANCELLED",
                                       "payment": {"accountId": account, "amountCents": 100}}
    assert make(dep, payment_id, account) == f"{payment_id} was cancelled before"
    assert dep.effects.matching(f"account {account} ") == [
        f"account {account} -100 ({payment_id})",
        f"account {account} +100 ({payment_id})",
    ]


def test_cancellation_before_payment_refuses_it(dep: Deployment) -> None:
    payment_id, account = ids()
    cancel(dep, payment_id)
    assert make(dep, payment_id, account) == f"{payment_id} was cancelled before"
    assert status(dep, payment_id) == {"status": "CANCELLED", "payment": None}
    assert dep.effects.matching(f"account {account} ") == []


def test_racing_payments_and_cancellations_end_consistently(dep: Deployment) -> None:
    for _ in range(3):
        payment_id, account = ids()
        calls = ["make"] * 4 + ["cancel"] * 2
        random.shuffle(calls)

        def one(call: str, payment_id: str = payment_id, account: str = account) -> str | None:
            if call == "make":
                return make(dep, payment_id, account)
            cancel(dep, payment_id)
            return None

        with ThreadPoolExecutor(len(calls)) as pool:
            results = list(pool.map(one, calls))
        processed = results.count(f"{payment_id} was processed")
        assert processed <= 1
        assert status(dep, payment_id)["status"] == "CANCELLED"
        assert balance(dep, account) == 0
        assert len(dep.effects.matching(f"account {account} ")) == 2 * processed


def test_the_token_expires_by_a_durable_timer(dep: Deployment) -> None:
    payment_id, account = ids()
    assert make(dep, payment_id, account) == f"{payment_id} was processed"
    started = time.monotonic()
    eventually(lambda: status(dep, payment_id) == {"status": "NEW", "payment": None} or _fail(),
               timeout=EXPIRY_S + 10)
    assert time.monotonic() - started >= EXPIRY_S - 0.5
    # After expiry the token is fresh again.
    assert make(dep, payment_id, account) == f"{payment_id} was processed"
    assert balance(dep, account) == -200


def _fail() -> bool:
    raise AssertionError("not expired yet")
