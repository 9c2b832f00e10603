"""End to end: an order goes CREATED → … → DELIVERED through payment, timer, restaurant and delivery."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest

from examples._harness import DeployFn, Deployment
from pyrestate.testing import eventually, json_of

PREPARATION_S = 1.0


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    return deploy("food_order", env={"RESTAURANT_PREPARATION_SECONDS": str(PREPARATION_S)})


def new_order(total_cost: float, delivery_delay_ms: int = 300) -> dict[str, Any]:
    oid = f"order-{uuid.uuid4().hex[:8]}"
    return {"id": oid, "total_cost": total_cost, "delivery_delay": delivery_delay_ms}


def status(dep: Deployment, order_id: str) -> str | None:
    result: str | None = json_of(dep.ingress.call("OrderProcessor", "getStatus", key=order_id))
    return result


def for_order(lines: list[str], order_id: str) -> list[str]:
    # Tokens are random: normalise them so whole sequences can be compared.
    return [re.sub(r"Payment \S+", "Payment <token>", re.sub(r"awakeable \S+\)", "awakeable <id>)", line))
            for line in lines if order_id in line]


def test_an_order_walks_through_every_state_to_delivered(dep: Deployment) -> None:
    order = new_order(30)
    oid = order["id"]
    started = time.monotonic()
    sent = dep.ingress.send_json("OrderProcessor", "process", order, key=oid)

    # The restaurant holds the order for PREPARATION_S: the handler waits on the awakeable meanwhile.
    eventually(lambda: _assert_equal(status(dep, oid), "IN_PREPARATION"), timeout=10, interval=0.05)
    assert time.monotonic() - started >= 0.3, "the delivery delay (durable sleep) was not observed"
    assert not dep.effects.matching(f"{oid} is ready")

    assert dep.ingress.attach(sent["invocationId"]).status_code == 200
    assert status(dep, oid) == "DELIVERED"
    driver = json_of(dep.ingress.call("DeliveryManager", "getDriver", key=oid))
    assert for_order(dep.effects.lines(), oid) == [
        f"Payment <token> charged: 30 for order {oid}",
        f"Restaurant preparing order {oid} (awakeable <id>)",
        f"Restaurant: order {oid} is ready",
        f"Driver {driver} assigned to order {oid}",
        f"Order {oid} delivered by {driver}",
    ]


def test_a_declined_payment_rejects_the_order(dep: Deployment) -> None:
    order = new_order(5000)
    r = dep.ingress.call("OrderProcessor", "process", order, key=order["id"])
    assert r.status_code == 200, r.text
    assert status(dep, order["id"]) == "REJECTED"
    assert for_order(dep.effects.lines(), order["id"]) == [
        f"Payment <token> declined: 5000 for order {order['id']}"
    ]


def test_a_crash_before_the_restaurant_call_charges_once_with_the_same_token(dep: Deployment) -> None:
    order = new_order(42, delivery_delay_ms=100)
    oid = order["id"]
    dep.arm_crash("prepare")
    sent = dep.ingress.send_json("OrderProcessor", "process", order, key=oid)
    dep.restart_after_crash()

    assert dep.ingress.attach(sent["invocationId"]).status_code == 200
    assert status(dep, oid) == "DELIVERED"
    driver = json_of(dep.ingress.call("DeliveryManager", "getDriver", key=oid))
    # The token and the charge were journaled before the crash: the replay reuses them, nothing is paid
    # twice, and the restaurant gets the order once (the crash hit before it was told).
    assert for_order(dep.effects.lines(), oid) == [
        f"Payment <token> charged: 42 for order {oid}",
        f"Restaurant preparing order {oid} (awakeable <id>)",
        f"Restaurant: order {oid} is ready",
        f"Driver {driver} assigned to order {oid}",
        f"Order {oid} delivered by {driver}",
    ]


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected, actual
