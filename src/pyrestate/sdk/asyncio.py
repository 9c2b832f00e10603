"""Combinators over durable futures: gather, select, as_completed, wait_completed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pyrestate.sdk._invocation.futures import ServerDurableFuture
from pyrestate.sdk._invocation.plumbing import ContextPlumbing
from pyrestate.sdk.context import RestateDurableFuture
from pyrestate.sdk.exceptions import TerminalError


def _check(futures: list[RestateDurableFuture[Any]]) -> ContextPlumbing | None:
    ctx: ContextPlumbing | None = None
    for f in futures:
        if not isinstance(f, ServerDurableFuture):
            raise TerminalError("All futures must SDK created futures.")
        if ctx is None:
            ctx = f.context
        elif ctx is not f.context:
            raise TerminalError("All futures must be created by the same SDK context.")
    return ctx


async def gather(*futures: RestateDurableFuture[Any]) -> list[RestateDurableFuture[Any]]:
    """Wait until every future completed (successfully or not); returns the futures."""
    fs = list(futures)
    ctx = _check(fs)
    pending = [f.handle for f in fs if isinstance(f, ServerDurableFuture) and not f.is_completed()]
    if pending and ctx is not None:
        await ctx.await_handles(pending, "all")
    return fs


async def wait_completed(
    *args: RestateDurableFuture[Any],
) -> tuple[list[RestateDurableFuture[Any]], list[RestateDurableFuture[Any]]]:
    """Wait until at least one future completed; returns (completed, not completed)."""
    fs = list(args)
    if not fs:
        return [], []
    ctx = _check(fs)
    done: list[RestateDurableFuture[Any]] = [
        f for f in fs if isinstance(f, ServerDurableFuture) and f.is_completed()
    ]
    if done:
        return done, [f for f in fs if f not in done]
    assert ctx is not None
    await ctx.await_handles([f.handle for f in fs if isinstance(f, ServerDurableFuture)], "any")
    done = [f for f in fs if isinstance(f, ServerDurableFuture) and f.is_completed()]
    return done, [f for f in fs if f not in done]


async def as_completed(*futures: RestateDurableFuture[Any]) -> AsyncIterator[RestateDurableFuture[Any]]:
    """Yield futures as they complete."""
    remaining = list(futures)
    while remaining:
        completed, remaining = await wait_completed(*remaining)
        for f in completed:
            yield f


async def select(**kws: RestateDurableFuture[Any]) -> list[Any]:
    """Wait for the first future to complete; returns [name, value]."""
    if not kws:
        raise ValueError("At least one future must be passed.")
    reverse = {id(f): k for k, f in kws.items()}
    async for f in as_completed(*kws.values()):
        return [reverse[id(f)], await f]
    raise AssertionError("unreachable")
