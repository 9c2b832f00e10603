"""Fetch a deployment's endpoint manifest (`GET {base}/discover`), as the official server does on
registration: every manifest version we speak in `accept`, retries on transient statuses and transport
errors, and a clear error for everything else. Validation of the manifest's content is not done here."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pyrestate.protocol.versions import SERVER_DISCOVERY_ACCEPT, DiscoveryVersion, discovery_content_type
from pyrestate.server.invoker.identity import RequestSigner
from pyrestate.server.invoker.transport import DeploymentClient, TransportError

__all__ = ["MANIFEST_CONTENT_TYPES", "DiscoveryError", "DiscoveryResponse", "discover"]

MANIFEST_CONTENT_TYPES: tuple[str, ...] = tuple(discovery_content_type(v) for v in DiscoveryVersion)
DISCOVERY_ACCEPT = SERVER_DISCOVERY_ACCEPT
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_MAX_BODY = 32 * 1024 * 1024


@dataclass(frozen=True)
class DiscoveryResponse:
    status: int
    content_type: str
    headers: list[tuple[str, str]]
    body: bytes
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest_version(self) -> int:
        """The N of `application/vnd.restate.endpointmanifest.vN+json`."""
        return MANIFEST_CONTENT_TYPES.index(self.content_type) + 1


class DiscoveryError(Exception):
    """Discovery failed; `status` is the HTTP status when there was a response."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def _fetch_once(client: DeploymentClient) -> tuple[int, list[tuple[str, str]], bytes]:
    stream = await client.open_stream("GET", "/discover", [("accept", DISCOVERY_ACCEPT)])
    try:
        await stream.end_request()
        status, headers = await stream.response_head()
        body = bytearray()
        while (chunk := await stream.receive()) is not None:
            body += chunk
            if len(body) > _MAX_BODY:
                raise DiscoveryError(f"discovery response exceeds {_MAX_BODY} bytes", status)
        return status, headers, bytes(body)
    finally:
        await stream.aclose()


async def discover(
    base_url: str,
    *,
    use_http_11: bool = False,
    additional_headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    attempts: int = 4,
    initial_backoff: float = 0.1,
    signer: RequestSigner | None = None,
) -> DiscoveryResponse:
    """Fetch and parse the manifest. `timeout` bounds each attempt (connect included)."""
    url = base_url.rstrip("/")
    last_error = ""
    last_status: int | None = None
    delay = initial_backoff
    async with DeploymentClient(
        base_url,
        use_http_11=use_http_11,
        additional_headers=additional_headers,
        connect_timeout=timeout,
        signer=signer,
    ) as client:
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
            try:
                status, headers, body = await asyncio.wait_for(_fetch_once(client), timeout)
            except TimeoutError:
                last_error, last_status = f"discovery at {url}/discover timed out after {timeout}s", None
                continue
            except TransportError as e:
                last_error, last_status = f"cannot reach {url}/discover: {e}", None
                if not e.retryable:
                    break
                continue
            if status in RETRYABLE_STATUSES:
                snippet = body[:200].decode("utf-8", "replace")
                last_error, last_status = f"discovery at {url}/discover answered {status}: {snippet}", status
                continue
            return _parse(url, status, headers, body)
    raise DiscoveryError(f"{last_error} (after {attempt + 1} attempt(s))", last_status)


def _parse(url: str, status: int, headers: list[tuple[str, str]], body: bytes) -> DiscoveryResponse:
    snippet = body[:200].decode("utf-8", "replace")
    if status != 200:
        raise DiscoveryError(f"discovery at {url}/discover answered {status}: {snippet}", status)
    raw_ct = _header(headers, "content-type")
    if raw_ct is None:
        raise DiscoveryError(f"discovery at {url}/discover answered without a content-type", status)
    content_type = raw_ct.split(";", 1)[0].strip().lower()
    if content_type not in MANIFEST_CONTENT_TYPES:
        raise DiscoveryError(
            f"discovery at {url}/discover answered content-type {raw_ct!r}, expected one of "
            f"{', '.join(MANIFEST_CONTENT_TYPES)}",
            status,
        )
    try:
        manifest = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise DiscoveryError(f"discovery at {url}/discover returned invalid JSON: {e}", status) from None
    if not isinstance(manifest, dict):
        raise DiscoveryError(f"discovery at {url}/discover returned JSON that is not an object", status)
    return DiscoveryResponse(status, content_type, headers, body, manifest)
