"""Request smuggling and connection hygiene of the HTTP/1.1 fronts, through raw sockets against a real
`pyrestate server` process: ambiguous framing is answered 400 and closed, requests cut short are closed
at once, no descriptor is left behind, and the header/idle timeouts and the connection limit hold."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pyrestate.testing import RuntimeConfig
from pyrestate.testing.rawhttp import MALFORMED, PARTIAL, exchange, open_fds, wait_for_fds
from pyrestate.testing.runtime import PyrestateServer

pytestmark = pytest.mark.timeout(120)


def _server(tmp_path: Path, **env: str) -> PyrestateServer:
    return PyrestateServer(RuntimeConfig(extra_env=env), data_dir=tmp_path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PyrestateServer]:
    with _server(tmp_path_factory.mktemp("smuggling")) as s:
        yield s  # type: ignore[misc]


def _port(server: PyrestateServer, which: str) -> int:
    return server.ingress_port if which == "ingress" else server.admin_port


@pytest.mark.parametrize("which", ["ingress", "admin"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_ambiguous_framing_is_answered_400_and_closed(server: PyrestateServer, which: str, case: str) -> None:
    answer, closed = exchange(_port(server, which), MALFORMED[case], half_close=False)
    assert closed, f"{case}: connection left open after {answer!r}"
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), f"{case}: {answer!r}"
    assert answer.count(b"HTTP/1.1 ") == 1, f"{case}: a second request was smuggled: {answer!r}"
    assert b"connection: close" in answer.lower()


@pytest.mark.parametrize("which", ["ingress", "admin"])
@pytest.mark.parametrize("case", sorted(PARTIAL))
def test_requests_cut_short_are_closed_promptly(server: PyrestateServer, which: str, case: str) -> None:
    started = time.monotonic()
    answer, closed = exchange(_port(server, which), PARTIAL[case], timeout=5.0)
    assert closed, f"{case}: connection left open (got {answer!r})"
    assert time.monotonic() - started < 2.0
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), f"{case}: {answer!r}"


@pytest.mark.parametrize("which", ["ingress", "admin"])
def test_well_formed_requests_still_work(server: PyrestateServer, which: str) -> None:
    port = _port(server, which)
    path = b"/restate/health" if which == "ingress" else b"/health"
    pipelined = b"GET %s HTTP/1.1\r\nhost: x\r\n\r\n" % path * 3
    answer, closed = exchange(port, pipelined, timeout=5.0)
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3 and closed, answer  # with the reason, as restate-server
    chunked = b"POST %s HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" % path
    answer, closed = exchange(port, chunked, timeout=5.0)
    assert answer.startswith(b"HTTP/1.1 ") and not answer.startswith(b"HTTP/1.1 400"), answer
    assert closed
    head = b"HEAD %s HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n" % path
    answer, closed = exchange(port, head, half_close=False)
    assert answer.startswith(b"HTTP/1.1 ") and closed, answer


def test_no_descriptor_leaks_from_broken_connections(server: PyrestateServer) -> None:
    pid = server.process.pid
    assert pid is not None
    before = open_fds(pid)
    attacks = [*PARTIAL.values(), *MALFORMED.values()]
    for i in range(300):
        port = server.ingress_port if i % 3 else server.admin_port
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(attacks[i % len(attacks)])
        # closed by the client without waiting for an answer
    after = wait_for_fds(pid, before + 5)
    assert after <= before + 5, f"{after - before} descriptors leaked"
    assert httpx.get(f"{server.admin_url}/health", timeout=5).status_code == 200
    assert httpx.get(f"{server.ingress_url}/restate/health", timeout=5).status_code == 200


def test_header_and_idle_timeouts(tmp_path: Path) -> None:
    with _server(tmp_path, PYRESTATE_HTTP_HEADER_TIMEOUT="1s", PYRESTATE_HTTP_IDLE_TIMEOUT="2s") as s:
        for port in (s.ingress_port, s.admin_port):
            # slowloris: a head that never ends, one byte at a time
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")
                received = b""
                try:
                    while time.monotonic() - started < 8:
                        sock.sendall(b"x")
                        sock.settimeout(0.3)
                        try:
                            chunk = sock.recv(1024)
                        except TimeoutError:
                            continue
                        if not chunk:
                            break
                        received += chunk
                except (BrokenPipeError, ConnectionResetError):
                    pass
            assert time.monotonic() - started < 5, "a slow head was not cut"
            assert received.startswith(b"HTTP/1.1 408"), received
            # a connection that sends nothing
            answer, closed = exchange(port, b"", half_close=False, timeout=5)
            assert closed and answer == b""
            # an idle keep-alive connection: open for more than the header timeout, closed after the idle one
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /restate/health HTTP/1.1\r\nhost: x\r\n\r\n")
                sock.settimeout(10)
                assert sock.recv(65536).startswith(b"HTTP/1.1 ")
                started = time.monotonic()
                assert sock.recv(1024) == b""
                assert 1.0 < time.monotonic() - started < 5


def test_connections_over_the_limit_are_refused_with_503(tmp_path: Path) -> None:
    with _server(tmp_path, PYRESTATE_MAX_CONNECTIONS="20") as s:
        held = [socket.create_connection(("127.0.0.1", s.ingress_port)) for _ in range(20)]
        try:
            time.sleep(0.3)
            for _ in range(3):
                answer, closed = exchange(
                    s.ingress_port, b"GET /restate/health HTTP/1.1\r\nhost: x\r\n\r\n", half_close=False
                )
                assert answer.startswith(b"HTTP/1.1 503") and closed, answer
                assert b"too many open connections" in answer
            # the admin port has its own allowance
            assert httpx.get(f"{s.admin_url}/health", timeout=5).status_code == 200
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 5
        while True:
            try:
                r = httpx.get(f"{s.ingress_url}/restate/health", timeout=5)
            except httpx.HTTPError:
                r = None
            if r is not None and r.status_code == 200:
                break
            assert time.monotonic() < deadline, "the ingress did not recover"
            time.sleep(0.1)
        log = s.log_path.read_text()
        assert log.count("connection(s) refused with 503") == 1, log[-3000:]
