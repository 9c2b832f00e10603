"""Connection attacks on a real `pyrestate server`: a flood of requests cut short (each once leaked a
descriptor until the process could accept nothing, admin included), slowloris heads, and more idle
connections than the limit. The server must give every descriptor back and both ports must keep answering.

The CI run is short; `FAULTS_SCALE=20` (see tests/faults/README.md) multiplies the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from pyrestate.testing import RuntimeConfig
from pyrestate.testing.rawhttp import MALFORMED, PARTIAL, open_fds, wait_for_fds
from pyrestate.testing.runtime import PyrestateServer

SCALE = float(os.environ.get("FAULTS_SCALE") or 1)
LIMIT = 400

pytestmark = pytest.mark.timeout(int(120 * max(1.0, SCALE)))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PyrestateServer]:
    env = {"PYRESTATE_HTTP_HEADER_TIMEOUT": "2s", "PYRESTATE_MAX_CONNECTIONS": str(LIMIT)}
    with PyrestateServer(RuntimeConfig(extra_env=env), data_dir=tmp_path_factory.mktemp("attacks")) as s:
        yield s  # type: ignore[misc]


def _pid(server: PyrestateServer) -> int:
    pid = server.process.pid
    assert pid is not None
    return pid


def _both_ports_answer(server: PyrestateServer) -> None:
    assert httpx.get(f"{server.admin_url}/health", timeout=10).status_code == 200
    assert httpx.get(f"{server.ingress_url}/restate/health", timeout=10).status_code == 200


async def _cut_short(port: int, data: bytes) -> None:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return  # the listen backlog is full for a moment: the flood goes on
    writer.write(data)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _flood(ports: list[int], total: int, parallel: int = 100) -> None:
    attacks = [*PARTIAL.values(), *MALFORMED.values()]
    gate = asyncio.Semaphore(parallel)

    async def one(i: int) -> None:
        async with gate:
            await _cut_short(ports[i % len(ports)], attacks[i % len(attacks)])

    await asyncio.gather(*(one(i) for i in range(total)))


def test_flood_of_requests_cut_short_leaks_nothing(server: PyrestateServer) -> None:
    pid = _pid(server)
    before = open_fds(pid)
    total = int(2000 * SCALE)
    started = time.monotonic()
    asyncio.run(_flood([server.ingress_port, server.ingress_port, server.admin_port], total))
    elapsed = time.monotonic() - started
    after = wait_for_fds(pid, before + 5, timeout=15)
    print(f"\n{total} connections cut short in {elapsed:.1f} s; descriptors {before} -> {after}")
    assert after <= before + 5, f"{after - before} descriptors leaked"
    _both_ports_answer(server)


async def _slowloris(port: int, count: int, seconds: float) -> tuple[int, int]:
    """`count` connections dripping a head that never ends; (opened, closed by the server in time)."""
    conns = []
    for _ in range(count):
        try:
            conns.append(await asyncio.open_connection("127.0.0.1", port))
        except OSError:
            continue
    deadline = time.monotonic() + seconds
    for _, writer in conns:
        writer.write(b"POST /Svc/h HTTP/1.1\r\nhost: x\r\n")
    closed = 0
    pending = list(conns)
    while pending and time.monotonic() < deadline:
        still = []
        for reader, writer in pending:
            if reader.at_eof() or writer.is_closing():
                closed += 1
                continue
            try:
                writer.write(b"x")
            except (ConnectionError, RuntimeError):
                closed += 1
                continue
            still.append((reader, writer))
        pending = still
        reads = [asyncio.wait_for(r.read(65536), 0.5) for r, _ in pending]
        await asyncio.gather(*reads, return_exceptions=True)
    for _, writer in conns:
        writer.close()
    return len(conns), closed


def test_slowloris_heads_are_cut_and_ports_keep_answering(server: PyrestateServer) -> None:
    pid = _pid(server)
    before = open_fds(pid)
    count = min(int(300 * SCALE), LIMIT - 20)

    async def attack() -> tuple[int, int]:
        task = asyncio.create_task(_slowloris(server.ingress_port, count, 10.0))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(_both_ports_answer, server)  # served while the attack holds its connections
        return await task

    opened, closed = asyncio.run(attack())
    print(f"\nslowloris: {opened} connections, {closed} cut by the header timeout")
    assert opened == count and closed == opened
    assert wait_for_fds(pid, before + 5) <= before + 5
    _both_ports_answer(server)


def test_more_connections_than_the_limit_are_refused_and_admin_answers(server: PyrestateServer) -> None:
    pid = _pid(server)
    before = open_fds(pid)

    async def attack() -> int:
        conns = []
        for _ in range(LIMIT + int(100 * SCALE)):
            try:
                conns.append(await asyncio.open_connection("127.0.0.1", server.ingress_port))
            except OSError:
                continue
        refused = 0
        for reader, _ in conns[LIMIT:]:
            try:
                answer = await asyncio.wait_for(reader.read(), 5)
            except (TimeoutError, ConnectionError):
                continue
            refused += answer.startswith(b"HTTP/1.1 503")
        await asyncio.to_thread(_admin_answers, server)  # its own allowance
        for _, writer in conns:
            writer.close()
        return refused

    refused = asyncio.run(attack())
    assert refused >= int(100 * SCALE) - 5
    assert wait_for_fds(pid, before + 5, timeout=15) <= before + 5
    _both_ports_answer(server)


def _admin_answers(server: PyrestateServer) -> None:
    assert httpx.get(f"{server.admin_url}/health", timeout=10).status_code == 200
