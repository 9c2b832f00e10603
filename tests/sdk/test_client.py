"""The ingress client (`create_client`) against the official restate-server hosting a pyrestate.sdk app."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import pyrestate.sdk as restate
from pyrestate.testing import OfficialRestateServer, RuntimeConfig, ServiceApp, register_deployment

APPS = Path(__file__).resolve().parent / "apps"
sys.path.insert(0, str(APPS))

import client_app as capp  # noqa: E402


@pytest.fixture(scope="module")
def ingress_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("client")
    app = ServiceApp("client_app:app", pythonpath=[APPS], log_dir=logs, name="sdk-client-app")
    server = OfficialRestateServer(RuntimeConfig(), log_dir=logs, name="official-client")
    app.start()
    try:
        server.start()
        try:
            register_deployment(server.admin_url, app.url)
            yield server.ingress_url
        finally:
            server.close()
    finally:
        app.stop()


@pytest.fixture
async def client(ingress_url: str) -> AsyncIterator[restate.RestateClient]:
    async with restate.create_client(ingress_url) as c:
        yield c


def _uid() -> str:
    return uuid.uuid4().hex[:12]


async def test_service_call_with_pydantic_models(client: restate.RestateClient) -> None:
    out = await client.service_call(capp.echo, capp.Item(name="tea", qty=2))
    assert out == capp.Item(name="TEA", qty=4)


async def test_call_without_input_and_raw_bytes(client: restate.RestateClient) -> None:
    assert await client.service_call(capp.no_input, None) == "nothing in"
    assert await client.service_call(capp.raw, b"\x00abc\xff") == b"\xffcba\x00"
    octets = {"Content-Type": "application/octet-stream"}
    assert await client.generic_call("ClientSvc", "raw", b"xyz", headers=octets) == b"zyx"
    with pytest.raises(restate.HttpError) as err:  # a body without content type is refused
        await client.generic_call("ClientSvc", "raw", b"xyz")
    assert err.value.status_code == 400


async def test_terminal_error_becomes_http_error(client: restate.RestateClient) -> None:
    with pytest.raises(restate.HttpError) as err:
        await client.service_call(capp.fail, "teapot")
    assert err.value.status_code == 418
    assert err.value.body is not None and "teapot" in err.value.body


async def test_object_call_and_send(client: restate.RestateClient) -> None:
    key = _uid()
    assert await client.object_call(capp.add, key, 5) == 5
    handle = await client.object_send(capp.add, key, 2)
    assert handle.invocation_id.startswith("inv_1")
    assert handle.status_code == 200
    assert handle.status == "Accepted"
    assert await handle.attach() == 7
    assert await handle.output() == 7
    assert await client.object_call(capp.get, key, None) == 7


async def test_send_delay_and_output_not_ready(client: restate.RestateClient) -> None:
    started = time.monotonic()
    handle = await client.service_send(capp.slow, 10, send_delay=timedelta(milliseconds=800))
    with pytest.raises(restate.HttpError) as err:
        await handle.output()
    assert err.value.status_code == 470
    assert await handle.attach() == "slept 10"
    assert time.monotonic() - started >= 0.8
    assert await client.get_invocation_output(handle.invocation_id) == "slept 10"


async def test_idempotent_call_executes_once(client: restate.RestateClient) -> None:
    key, idem = _uid(), _uid()
    first = await client.service_call(capp.bump_once, key, idempotency_key=idem)
    again = await client.service_call(capp.bump_once, key, idempotency_key=idem)
    assert first == again == 1
    assert await client.object_call(capp.get, key, None) == 1
    # latch on to the finished task by its idempotency key
    assert await client.service_attach(capp.bump_once, idem) == 1
    assert await client.service_output(capp.bump_once, idem) == 1


async def test_idempotent_send_and_attach_by_key(client: restate.RestateClient) -> None:
    key, idem = _uid(), _uid()
    a = await client.object_send(capp.slow_add, key, 3, idempotency_key=idem)
    b = await client.object_send(capp.slow_add, key, 3, idempotency_key=idem)
    assert (a.status, b.status) == ("Accepted", "PreviouslyAccepted")
    assert a.invocation_id == b.invocation_id
    with pytest.raises(restate.HttpError) as err:
        await client.object_output(capp.slow_add, key, idem)
    assert err.value.status_code == 470
    assert await client.object_attach(capp.slow_add, key, idem) == 3
    assert await client.object_output(capp.slow_add, key, idem) == 3
    assert await client.object_call(capp.get, key, None) == 3


async def test_workflow_send_attach_output(client: restate.RestateClient) -> None:
    key = _uid()
    handle = await client.workflow_send(capp.run, key, capp.Item(name="cake", qty=1))
    assert handle.invocation_id.startswith("inv_1")
    with pytest.raises(restate.HttpError) as err:
        await client.workflow_output(capp.run, key)
    assert err.value.status_code == 470
    attached = asyncio.ensure_future(client.workflow_attach(capp.run, key))
    await asyncio.sleep(0.2)  # time passes, and the attach does not return before the release
    assert not attached.done()
    await client.workflow_call(capp.release, key, 4)
    assert await asyncio.wait_for(attached, 10) == capp.Item(name="cake", qty=5)
    assert await client.workflow_output(capp.run, key) == capp.Item(name="cake", qty=5)
    assert await handle.attach() == capp.Item(name="cake", qty=5)


async def test_generic_send_handle(client: restate.RestateClient) -> None:
    octets = {"Content-Type": "application/octet-stream"}
    handle = await client.generic_send("ClientSvc", "raw", b"abc", idempotency_key=_uid(), headers=octets)
    assert handle.status == "Accepted"
    assert await handle.attach() == b"cba"
    assert await client.attach_invocation(handle.invocation_id, serde=restate.BytesSerde()) == b"cba"


async def test_unknown_invocation_is_404(client: restate.RestateClient) -> None:
    handle = await client.service_send(capp.slow, 1)
    bogus = handle.invocation_id[:-4] + ("AAAA" if not handle.invocation_id.endswith("AAAA") else "BBBB")
    with pytest.raises(restate.HttpError) as err:
        await client.get_invocation_output(bogus)
    assert err.value.status_code == 404


async def test_create_client_requires_ingress() -> None:
    with pytest.raises(restate.ConnectError):
        async with restate.create_client():
            pass
