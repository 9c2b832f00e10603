"""End to end: a card is answered synchronously, a bank transfer through the provider's webhook (an
awakeable), and each payment is charged exactly once, also when the service is killed between the charge
request and the webhook."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from examples._harness import ROOT, DeployFn, Deployment, Effects
from examples.conftest import Runtime
from pyrestate.testing import json_of
from pyrestate.testing.process import ManagedProcess, free_port

WEBHOOK_DELAY_MS = 1500


@pytest.fixture(scope="module")
def provider(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Effects]]:
    """The fake provider as a process of its own: it keeps its charges when the service is killed."""
    work = tmp_path_factory.mktemp("payment-provider")
    effects = Effects(work / "effects.log")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EXAMPLES_EFFECTS_FILE": str(effects.path),
           "RESTATE_URL": runtime.ingress_url, "WEBHOOK_DELAY_MS": str(WEBHOOK_DELAY_MS)}
    url = f"http://127.0.0.1:{port}"
    proc = ManagedProcess("payment-provider",
                          [sys.executable, "-m", "examples.payment_signals.provider", "--port", str(port)],
                          work / "provider.log", env=env, cwd=ROOT, ready_url=f"{url}/health")
    proc.start()
    yield url, effects
    proc.stop()


@pytest.fixture(scope="module")
def dep(deploy: DeployFn, provider: tuple[str, Effects]) -> Deployment:
    dep = deploy("payment_signals", env={"PAYMENT_PROVIDER_URL": provider[0]})
    dep.extra["provider"] = provider[1]
    return dep


def pay(amount: int, method: str) -> dict[str, Any]:
    return {"orderId": f"order-{uuid.uuid4().hex[:8]}", "amount": amount, "method": method}


def charges(dep: Deployment, order_id: str) -> list[str]:
    provider: Effects = dep.extra["provider"]
    return [x for x in provider.lines() if x.startswith("provider: charged ") and f"order {order_id}:" in x]


def test_a_card_is_answered_synchronously(dep: Deployment) -> None:
    request = pay(30, "card")
    result = dep.ingress.call_json("checkout", "processPayment", request)
    assert result["status"] == "succeeded" and result["answer"] == "synchronous", result
    assert charges(dep, request["orderId"]) == [
        f"provider: charged {result['paymentId']} for order {request['orderId']}: 30 by card"]


def test_a_declined_card_is_a_synchronous_failure(dep: Deployment) -> None:
    result = dep.ingress.call_json("checkout", "processPayment", pay(5000, "card"))
    assert result["status"] == "failed" and result["answer"] == "synchronous", result


def test_a_bank_transfer_waits_for_the_webhook(dep: Deployment) -> None:
    request = pay(120, "bank_transfer")
    result = dep.ingress.call_json("checkout", "processPayment", request)
    assert result["status"] == "succeeded" and result["answer"] == "webhook", result
    assert len(charges(dep, request["orderId"])) == 1
    # The provider writes its line once Restate has accepted the webhook: it may come after the result.
    delivered = f"provider: webhook delivered for {result['paymentId']}"
    assert dep.extra["provider"].wait_for_line(delivered).count(delivered) == 1


def test_a_crash_after_the_charge_retries_with_the_same_key_and_charges_once(dep: Deployment) -> None:
    request = pay(45, "card")
    dep.arm_crash("charged")  # after the provider answered, before the journal has the answer
    sent = dep.ingress.send_json("checkout", "processPayment", request, idempotency_key=request["orderId"])
    dep.restart_after_crash()
    result = json_of(dep.ingress.attach(sent["invocationId"]))
    assert result["status"] == "succeeded", result
    assert len(charges(dep, request["orderId"])) == 1
    # The retried step asked again with the journaled key: the provider answered without charging.
    assert len(dep.extra["provider"].matching(f"provider: repeated request for {result['paymentId']} ")) == 1


def test_killing_the_service_while_it_waits_for_the_webhook_still_charges_once(dep: Deployment) -> None:
    request = pay(200, "bank_transfer")
    provider: Effects = dep.extra["provider"]
    sent = dep.ingress.send_json("checkout", "processPayment", request, idempotency_key=request["orderId"])
    provider.wait_for(lambda _: len(charges(dep, request["orderId"])) == 1)
    payment_id = charges(dep, request["orderId"])[0].split()[2]
    dep.kill()  # SIGKILL: the handler was waiting on the awakeable
    # The provider's webhook reaches Restate while the service is down: it is stored, not lost.
    provider.wait_for_line(f"provider: webhook delivered for {payment_id}", timeout=20)
    dep.start()
    result = json_of(dep.ingress.attach(sent["invocationId"]))
    assert result == {"orderId": request["orderId"], "paymentId": payment_id, "status": "succeeded",
                      "answer": "webhook"}
    # Whether the kill came before or after the journal took the provider's answer, one charge.
    assert len(charges(dep, request["orderId"])) == 1
