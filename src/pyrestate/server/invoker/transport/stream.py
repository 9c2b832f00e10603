"""The transport's vocabulary shared by both HTTP versions: the stream interface, its errors, header text."""

from __future__ import annotations

import h2.errors
import hpack

_READ_SIZE = 65536
# Connection-specific headers are forbidden in HTTP/2 (RFC 9113 §8.2.2); h1 framing is ours to choose.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "host",
        "content-length",
    }
)


_BAD_NAME = frozenset(" \t\r\n\0:")


class TransportError(Exception):
    """The exchange with the deployment failed below the HTTP semantics level.

    `retryable` is True for conditions a later attempt may not hit (refused/reset connections, GOAWAY,
    protocol errors); False for local misuse or a closed client.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class _Unprocessed(TransportError):
    """The peer did not process the stream (REFUSED_STREAM, above GOAWAY last id): safe to replay."""


def _encode(value: str) -> bytes:
    return value.encode("utf-8")


# Values unique to one request: kept out of the HPACK dynamic table, where they would only evict the
# repeated headers (content type, path, key) and lengthen every table search.
_UNIQUE_HEADERS = frozenset({"x-restate-invocation-id", "x-restate-jwt-v1"})


def _h2_header(name: str, value: str) -> tuple[bytes, bytes]:
    if name in _UNIQUE_HEADERS:
        return hpack.NeverIndexedHeaderTuple(_encode(name), _encode(value))
    return (_encode(name), _encode(value))


def _decode(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _error_name(code: object) -> str:
    return code.name if isinstance(code, h2.errors.ErrorCodes) else str(code)


class InvocationStream:
    """One HTTP exchange with a deployment: a request body going out, a response body coming in."""

    async def response_head(self) -> tuple[int, list[tuple[str, str]]]:
        """Wait for the response status and headers."""
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        """Send request body bytes (HTTP/2: immediately; HTTP/1.1: buffered until `end_request`)."""
        raise NotImplementedError

    async def end_request(self) -> None:
        """Half-close the request side."""
        raise NotImplementedError

    async def receive(self) -> bytes | None:
        """Next response body chunk; None once the response ended cleanly."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Reset or abandon the exchange if still open. Idempotent."""
        raise NotImplementedError

    async def __aenter__(self) -> InvocationStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
