"""Ingress client for tests (sync and async, httpx) and an `eventually` polling helper."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

T = TypeVar("T")

_NO_BODY = object()


def target_path(service: str, handler: str, key: str | None = None) -> str:
    if key is None:
        return f"/{service}/{handler}"
    return f"/{service}/{quote(key, safe='')}/{handler}"


@dataclass
class _Req:
    method: str
    path: str
    content: bytes | None
    headers: dict[str, str]
    params: dict[str, str]


def _build(
    path: str,
    body: Any,
    raw: bytes | None,
    content_type: str | None,
    idempotency_key: str | None,
    headers: dict[str, str] | None,
    params: dict[str, str] | None = None,
) -> _Req:
    h = dict(headers or {})
    content: bytes | None = None
    if raw is not None:
        content = raw
        h.setdefault("content-type", content_type or "application/octet-stream")
    elif body is not _NO_BODY:
        content = json.dumps(body).encode()
        h.setdefault("content-type", content_type or "application/json")
    if idempotency_key is not None:
        h["idempotency-key"] = idempotency_key
    return _Req("POST", path, content, h, params or {})


class IngressError(AssertionError):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(
            f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text}"
        )
        self.response = response


def json_of(response: httpx.Response) -> Any:
    """The JSON body of a successful response (raises with the body otherwise, so failures read well)."""
    if response.status_code >= 300:
        raise IngressError(response)
    return response.json() if response.content else None


class Ingress:
    """Synchronous ingress client.

    `retry_for` > 0 retries transport errors and 5xx-before-invocation answers for that many seconds; only
    safe with an idempotency key, so one is generated when retrying and none was given.
    """

    def __init__(self, ingress_url: str, timeout: float = 60.0) -> None:
        self.url = ingress_url
        self.client = httpx.Client(base_url=ingress_url, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Ingress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, req: _Req, retry_for: float) -> httpx.Response:
        deadline = time.monotonic() + retry_for
        while True:
            try:
                r = self.client.request(
                    req.method, req.path, content=req.content, headers=req.headers, params=req.params
                )
                # Right after a restart the ingress can answer before partitions are led.
                if retry_for and r.status_code in (502, 503, 504) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                return r
            except httpx.TransportError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
                # A reset connection pool avoids reusing sockets to a process that died.
                self.client = httpx.Client(base_url=self.url, timeout=self.client.timeout)

    def call(
        self,
        service: str,
        handler: str,
        body: Any = _NO_BODY,
        *,
        key: str | None = None,
        raw: bytes | None = None,
        content_type: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        retry_for: float = 0.0,
    ) -> httpx.Response:
        if retry_for and idempotency_key is None:
            idempotency_key = str(uuid.uuid4())
        req = _build(target_path(service, handler, key), body, raw, content_type, idempotency_key, headers)
        return self._send(req, retry_for)

    def call_json(self, service: str, handler: str, body: Any = _NO_BODY, **kw: Any) -> Any:
        return json_of(self.call(service, handler, body, **kw))

    def send(
        self,
        service: str,
        handler: str,
        body: Any = _NO_BODY,
        *,
        key: str | None = None,
        delay: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        retry_for: float = 0.0,
    ) -> httpx.Response:
        if retry_for and idempotency_key is None:
            idempotency_key = str(uuid.uuid4())
        params = {"delay": delay} if delay is not None else None
        req = _build(
            target_path(service, handler, key) + "/send", body, None, None, idempotency_key, headers, params
        )
        return self._send(req, retry_for)

    def send_json(self, service: str, handler: str, body: Any = _NO_BODY, **kw: Any) -> dict[str, Any]:
        r = self.send(service, handler, body, **kw)
        if r.status_code != 202:
            raise IngressError(r)
        result: dict[str, Any] = r.json()
        return result

    def attach(self, invocation_id: str) -> httpx.Response:
        return self.client.get(f"/restate/invocation/{invocation_id}/attach")

    def output(self, invocation_id: str) -> httpx.Response:
        return self.client.get(f"/restate/invocation/{invocation_id}/output")

    def attach_by_key(
        self, service: str, handler: str, idempotency_key: str, key: str | None = None, output: bool = False
    ) -> httpx.Response:
        base = f"/restate/invocation/{service}"
        if key is not None:
            base += f"/{quote(key, safe='')}"
        return self.client.get(f"{base}/{handler}/{idempotency_key}/{'output' if output else 'attach'}")

    def workflow_attach(self, workflow: str, wf_id: str, output: bool = False) -> httpx.Response:
        return self.client.get(
            f"/restate/workflow/{workflow}/{quote(wf_id, safe='')}/{'output' if output else 'attach'}"
        )

    def resolve_awakeable(self, awakeable_id: str, value: Any) -> httpx.Response:
        return self.client.post(
            f"/restate/awakeables/{awakeable_id}/resolve",
            content=json.dumps(value).encode(),
            headers={"content-type": "application/json"},
        )

    def reject_awakeable(self, awakeable_id: str, reason: str) -> httpx.Response:
        return self.client.post(
            f"/restate/awakeables/{awakeable_id}/reject",
            content=reason.encode(),
            headers={"content-type": "text/plain"},
        )


class AsyncIngress:
    """The async twin of `Ingress` for fan-out scenarios (many concurrent invocations)."""

    def __init__(self, ingress_url: str, timeout: float = 60.0) -> None:
        self.url = ingress_url
        self.client = httpx.AsyncClient(
            base_url=ingress_url, timeout=timeout, limits=httpx.Limits(max_connections=200)
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> AsyncIngress:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(
        self,
        service: str,
        handler: str,
        body: Any = _NO_BODY,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        req = _build(target_path(service, handler, key), body, None, None, idempotency_key, headers)
        return await self.client.request(req.method, req.path, content=req.content, headers=req.headers)

    async def call_json(self, service: str, handler: str, body: Any = _NO_BODY, **kw: Any) -> Any:
        return json_of(await self.call(service, handler, body, **kw))


def eventually(fn: Callable[[], T], timeout: float = 20.0, interval: float = 0.1) -> T:
    """Call `fn` until it stops raising AssertionError (or an httpx transport error); return its value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (AssertionError, httpx.TransportError):
            if time.monotonic() >= deadline:
                raise
        time.sleep(interval)


async def eventually_async(fn: Callable[[], Awaitable[T]], timeout: float = 20.0, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await fn()
        except (AssertionError, httpx.TransportError):
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(interval)
