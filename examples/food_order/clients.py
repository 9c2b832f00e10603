"""Stand-ins for the systems the order process talks to: payment provider, restaurant, driver pool.

The restaurant is external: it gets the awakeable id with the order and, once the food is ready, resolves
it over Restate's HTTP ingress (`POST /restate/awakeables/<id>/resolve`), as a real restaurant webhook would.
RESTAURANT_PREPARATION_SECONDS sets how long it cooks (default 3); `manual` leaves the resolution to you.
"""

from __future__ import annotations

import os
import threading
import time

import httpx

from examples.effects import maybe_crash, record

# Orders above this amount are declined, so the rejected branch can be tried with curl.
CREDIT_LIMIT = 1000


async def charge(order_id: str, token: str, amount: float) -> bool:
    if amount > CREDIT_LIMIT:
        record(f"Payment {token} declined: {amount} for order {order_id}")
        return False
    record(f"Payment {token} charged: {amount} for order {order_id}")
    return True


def prepare(order_id: str, awakeable_id: str) -> None:
    maybe_crash("prepare")
    record(f"Restaurant preparing order {order_id} (awakeable {awakeable_id})")
    setting = os.environ.get("RESTAURANT_PREPARATION_SECONDS", "3")
    if setting == "manual":
        return
    # A thread, not the handler: the restaurant answers long after this call returned.
    threading.Thread(target=_ready_later, args=(order_id, awakeable_id, float(setting)), daemon=True).start()


def _ready_later(order_id: str, awakeable_id: str, seconds: float) -> None:
    time.sleep(seconds)
    ingress = os.environ.get("RESTATE_URL", "http://127.0.0.1:8080")
    # Resolving an awakeable twice is harmless, so retrying on a transport error is safe.
    for _ in range(20):
        try:
            httpx.post(f"{ingress}/restate/awakeables/{awakeable_id}/resolve", json=None, timeout=10)
            record(f"Restaurant: order {order_id} is ready")
            return
        except httpx.TransportError:
            time.sleep(0.5)


def find_driver(order_id: str) -> str:
    driver = f"driver-{sum(order_id.encode()) % 7 + 1}"
    record(f"Driver {driver} assigned to order {order_id}")
    return driver


def deliver(order_id: str, driver: str) -> None:
    record(f"Order {order_id} delivered by {driver}")
