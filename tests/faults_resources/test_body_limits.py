"""Huge request bodies: the ingress (configurable limit) and the admin API (16 MiB) answer 413 with a message,
whether the size is announced (content-length) or streamed (chunked), and keep serving afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from resfaults_apps import counter_app

from pyrestate.testing import LocalRestate, RuntimeConfig, local_restate

pytestmark = pytest.mark.timeout(120)

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def env() -> Iterator[LocalRestate]:
    with local_restate(
        counter_app, config=RuntimeConfig(extra_env={"PYRESTATE_MAX_REQUEST_BODY": str(LIMIT)})
    ) as e:
        yield e


def _chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // 65536 + 1):
        yield b"1" * 65536


def test_ingress_refuses_a_body_over_the_limit(env: LocalRestate) -> None:
    with httpx.Client(base_url=env.ingress_url, timeout=30) as c:
        r = c.post(
            "/DiskCounter/big/add", content=b"1" * (LIMIT + 1), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413, r.text
        assert "payload too large" in r.json()["message"]
        try:
            r = c.post("/DiskCounter/big/add", content=_chunks(4 * LIMIT))
        except (httpx.RemoteProtocolError, httpx.WriteError):
            pass  # the server may answer and close before the client has finished streaming
        else:
            assert r.status_code == 413, r.text
        r = c.post("/DiskCounter/big/add", json=1)  # the server keeps serving
        assert (r.status_code, r.json()) == (200, 1), r.text
        assert (
            c.post(
                "/DiskCounter/big/add",
                content=b" " * (LIMIT - 2) + b"1",
                headers={"content-type": "application/json"},
            ).json()
            == 2
        )


def test_admin_refuses_a_body_over_16_mib(env: LocalRestate) -> None:
    size = 16 * 1024 * 1024 + 1
    with httpx.Client(base_url=env.admin_url, timeout=60) as c:
        for content in (b" " * size, _chunks(size)):
            try:
                r = c.post("/deployments", content=content, headers={"content-type": "application/json"})
            except (httpx.RemoteProtocolError, httpx.WriteError):
                continue  # the server may answer 413 and close while 16 MiB are still on their way
            assert r.status_code == 413, r.text
            assert "length limit exceeded" in r.text
    with httpx.Client(base_url=env.admin_url, timeout=60) as c:
        assert c.get("/health").status_code == 200  # and it keeps serving
