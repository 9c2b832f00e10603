"""End to end through the web app: reservation1 -> true, reservation2 -> false, reservation1 again -> true."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from examples._harness import DeployFn, Deployment


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    services = deploy("durable_rpc")
    services.extra["web"] = deploy("durable_rpc", module="web", register=False).app.url
    return services


def reserve(web: str, product: str, reservation: str) -> bool:
    r = httpx.post(f"{web}/reserve/{product}/{reservation}", timeout=60.0)
    assert r.status_code == 200, r.text
    result = r.json()
    assert isinstance(result, bool)
    return result


def test_reservations_are_deduplicated_by_reservation_id(dep: Deployment) -> None:
    web = dep.extra["web"]
    product = f"product1-{uuid.uuid4().hex[:6]}"
    assert reserve(web, product, "reservation1") is True
    assert reserve(web, product, "reservation2") is False
    assert reserve(web, product, "reservation1") is True
    # The repeated reservation1 was answered from Restate, not executed again.
    assert dep.effects.matching(product) == [f"product {product}: reserved", f"product {product}: rejected"]


def test_concurrent_reservations_of_one_product_have_one_winner(dep: Deployment) -> None:
    web = dep.extra["web"]
    product = f"product-{uuid.uuid4().hex[:6]}"
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: reserve(web, product, f"r{i % 4}"), range(8)))
    assert sum(results) == 2  # the winning reservation id was sent twice and both got `true`
    winners = {f"r{i % 4}" for i in range(8) if results[i]}
    assert len(winners) == 1
    assert dep.effects.matching(product).count(f"product {product}: reserved") == 1
    assert len(dep.effects.matching(product)) == 4
