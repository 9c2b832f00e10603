"""Exceptions of the public SDK API."""

from __future__ import annotations

from datetime import timedelta


class TerminalError(Exception):
    """Raised to fail an invocation (or a ctx.run) without retries."""

    def __init__(self, message: str, status_code: int = 500, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.metadata = metadata


class RetryableError(Exception):
    """Raised to fail the attempt and ask for a retry, optionally after an explicit delay."""

    def __init__(self, message: str, status_code: int = 500, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after


class SdkInternalBaseException(BaseException):
    """Control flow of the SDK (suspension, attempt over). A BaseException so `except Exception` misses it."""

    def __init__(self, message: str) -> None:
        super().__init__(
            message + "\nThis exception is internal to the SDK: do not catch it with a bare `except:`; "
            "catch TerminalError (or Exception) instead."
        )


class SuspendedException(SdkInternalBaseException):
    def __init__(self) -> None:
        super().__init__("Invocation got suspended; it resumes when progress can be made.")


class SdkInternalException(SdkInternalBaseException):
    def __init__(self) -> None:
        super().__init__("The invocation attempt ended with a retryable error; it will be retried.")


def is_internal_exception(e: BaseException) -> bool:
    return isinstance(e, SdkInternalBaseException)
