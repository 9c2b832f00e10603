"""The admin API's request and response vocabulary: the parsed request, answers, the two error shapes (JSON
for API errors, text/plain for request extraction failures, as Restate's web framework answers them)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pyrestate.server.asgi import BodyTooLarge, Headers, Receive, header, read_body
from pyrestate.server.resource_ids import IdDecodeError

MAX_ADMIN_BODY = 16 * 1024 * 1024


class AdminError(Exception):
    """A JSON error answer `{"message": …, "restate_code": …}`."""

    def __init__(self, status: int, message: str, restate_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.restate_code = restate_code


class PlainError(Exception):
    """A text/plain error answer (request extraction failures)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Response:
    def __init__(self, status: int, body: object = None, headers: Headers | None = None) -> None:
        self.status = status
        self.body = body  # None: empty body
        self.headers = headers or []


@dataclass(slots=True)
class Request:
    """One admin request: `path` is what follows the resource name (and the optional `/vN` prefix)."""

    method: str
    path: list[str]
    query: dict[str, str]
    headers: Headers
    receive: Receive
    api_version: int | None

    async def body_json(self) -> Any:
        ct = header(self.headers, "content-type")
        if ct is None or ct.split(";")[0].strip().lower() != "application/json":
            raise PlainError(415, "Expected request with `Content-Type: application/json`")
        try:
            raw = await read_body(self.receive, self.headers, MAX_ADMIN_BODY)
        except BodyTooLarge:
            raise PlainError(413, "Failed to buffer the request body: length limit exceeded") from None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise PlainError(400, f"Failed to parse the request body as JSON: {e}") from None
        except RecursionError:
            raise PlainError(400, "Failed to parse the request body as JSON: nested too deeply") from None


def only(method: str, allowed: str) -> Response | None:
    return None if method == allowed else method_not_allowed(allowed)


def method_not_allowed(allow: str) -> Response:
    return Response(405, None, [("allow", allow)])


def check_path_id(what: str, value: str, check: Callable[[str], str]) -> None:
    try:
        check(value)
    except IdDecodeError as e:
        raise PlainError(
            400, f"Invalid URL: Cannot parse `{what}` with value `{value}`: {e.reason}"
        ) from None


def header_value(headers: Any, name: str) -> str | None:
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    for k, v in items:
        k_s = k.decode("latin-1") if isinstance(k, bytes) else str(k)
        if k_s.lower() == name:
            return v.decode("latin-1") if isinstance(v, bytes) else str(v)
    return None
