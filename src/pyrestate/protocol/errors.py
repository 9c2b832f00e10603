"""Error types and the error codes reserved by the Restate service protocol."""

from __future__ import annotations

import enum


class ProtocolError(Exception):
    """The byte stream or a message in it violates the service protocol. Never retried silently."""


class MessageTooLarge(ProtocolError):
    """A message header announces a payload over the decoder's limit."""

    def __init__(self, type_name: str, size: int, limit: int) -> None:
        super().__init__(f"{type_name} message of {size} bytes exceeds the limit of {limit} bytes")
        self.type_name = type_name
        self.size = size
        self.limit = limit


class ErrorCode(enum.IntEnum):
    """Codes that carry protocol meaning; any other HTTP status is also a valid failure code."""

    BAD_REQUEST = 400
    NOT_FOUND = 404
    CONFLICT = 409  # cancelled, killed, promise already completed
    GONE = 410
    INTERNAL = 500
    UNAVAILABLE = 503  # the deployment could not be reached
    NOT_READY = 470
    JOURNAL_MISMATCH = 570
    PROTOCOL_VIOLATION = 571
    AWAITING_TWO_ASYNC_RESULTS = 572
    UNSUPPORTED_FEATURE = 573
