"""Loggers for handler code that stay quiet while an invocation replays its journal."""

from __future__ import annotations

import contextvars
import logging
from typing import Protocol


class _ReplayAware(Protocol):
    @property
    def is_replaying(self) -> bool: ...


# The state machine of the invocation running in the current task (None outside handlers). Asked at
# emit time, so a record is dropped exactly while commands are still being replayed.
current_vm: contextvars.ContextVar[_ReplayAware | None] = contextvars.ContextVar(
    "pyrestate_current_vm", default=None
)


def is_replaying() -> bool:
    vm = current_vm.get()
    return vm is not None and vm.is_replaying


def getLogger(name: str | None = None) -> logging.Logger:
    """logging.getLogger(name) with a RestateLoggingFilter attached."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RestateLoggingFilter) for f in logger.filters):
        logger.addFilter(RestateLoggingFilter())
    return logger


class RestateLoggingFilter(logging.Filter):
    """Drops records emitted while the current invocation is replaying (they were logged the first time)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not super().filter(record):
            return False
        return not is_replaying()


__all__ = ["RestateLoggingFilter", "getLogger"]
