"""Drain probes: how many /send invocations are not completed yet, and when the backlog reaches zero.

Two implementations, chosen per server (`--drain-probe auto` picks the first that works):
- `query`:   the admin SQL endpoint, `POST /query` counting non-completed rows of sys_invocation (the
             official server; pyrestate once it serves that table).
- `outputs`: polls `GET /restate/invocation/{id}/output` on the ingress (470 = not ready yet) for the ids
             the load generator captured from the 202 bodies. It watches the newest ids until they are
             done, then sweeps all remaining ids; the drain ends when a sweep finds none pending.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from bench.loadgen import H1Connection, HttpError, build_request

DRAIN_SQL = "SELECT count(*) AS n FROM sys_invocation WHERE status != 'completed'"
NOT_READY = 470


@dataclass
class DrainResult:
    seconds: float | None  # None: gave up at the timeout
    backlog_at_end: int | None
    backlog_exact: bool
    polls: int


class DrainProbe(Protocol):
    name: str

    def describe(self) -> str: ...

    def wait_drained(
        self, ids: Sequence[str], t_start: float, timeout: float, poll: float
    ) -> DrainResult: ...


class QueryProbe:
    name = "query"

    def __init__(self, admin_url: str, sql: str = DRAIN_SQL) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.sql = sql
        self._client = httpx.Client(timeout=30.0)

    def describe(self) -> str:
        return f"`POST /query` `{self.sql}`"

    def count(self) -> int:
        r = self._client.post(
            f"{self.admin_url}/query", json={"query": self.sql}, headers={"accept": "application/json"}
        )
        r.raise_for_status()
        rows = r.json()["rows"]
        return int(next(iter(rows[0].values()))) if rows else 0

    def works(self) -> bool:
        try:
            self.count()
        except (httpx.HTTPError, KeyError, ValueError, TypeError, StopIteration, json.JSONDecodeError):
            return False
        return True

    def wait_drained(self, ids: Sequence[str], t_start: float, timeout: float, poll: float) -> DrainResult:
        first: int | None = None
        polls = 0
        while True:
            try:
                n = self.count()
            except httpx.HTTPError:
                n = -1  # a transient error: keep polling
            polls += 1
            if first is None and n >= 0:
                first = n
            if n == 0:
                return DrainResult(time.monotonic() - t_start, first, True, polls)
            if time.monotonic() - t_start > timeout:
                return DrainResult(None, first, True, polls)
            time.sleep(poll)


class OutputsProbe:
    name = "outputs"

    def __init__(self, ingress_url: str, conc: int = 16, tail: int = 32, sample: int = 256) -> None:
        u = urlsplit(ingress_url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.conc = conc
        self.tail = tail
        self.sample = sample

    def describe(self) -> str:
        return (
            "`GET /restate/invocation/{id}/output` per captured id (470 = pending); backlog at end is "
            f"estimated from {self.sample} evenly spread ids"
        )

    async def _pending(self, ids: Sequence[str]) -> list[str]:
        """The ids among `ids` that are not completed, in their original order."""
        queue = list(enumerate(ids))
        flags = [True] * len(ids)
        hostport = f"{self.host}:{self.port}"

        async def worker() -> None:
            conn: H1Connection | None = None
            try:
                while queue:
                    i, inv = queue.pop()
                    if conn is None:
                        conn = await H1Connection.open(self.host, self.port)
                    try:
                        status, _ = await conn.request(
                            build_request("GET", hostport, f"/restate/invocation/{inv}/output")
                        )
                    except (OSError, asyncio.IncompleteReadError, HttpError, ValueError):
                        conn.close()
                        conn = None
                        continue  # counts as pending
                    flags[i] = status == NOT_READY or status >= 500
            finally:
                if conn is not None:
                    conn.close()

        await asyncio.gather(*(worker() for _ in range(min(self.conc, max(1, len(ids))))))
        return [inv for inv, pending in zip(ids, flags, strict=True) if pending]

    def pending(self, ids: Sequence[str]) -> list[str]:
        return asyncio.run(self._pending(ids)) if ids else []

    def estimate(self, ids: Sequence[str]) -> int:
        if len(ids) <= self.sample:
            return len(self.pending(ids))
        step = len(ids) / self.sample
        picked = [ids[int(i * step)] for i in range(self.sample)]
        return round(len(self.pending(picked)) / self.sample * len(ids))

    def wait_drained(self, ids: Sequence[str], t_start: float, timeout: float, poll: float) -> DrainResult:
        remaining = list(ids)
        first = self.estimate(remaining)
        polls = 1
        exact = len(remaining) <= self.sample
        while remaining:
            if time.monotonic() - t_start > timeout:
                return DrainResult(None, first, exact, polls)
            newest = remaining[-self.tail :]
            still = self.pending(newest)
            polls += 1
            if not still:
                remaining = self.pending(remaining[: -self.tail])
                polls += 1
                if not remaining:
                    break
            else:
                remaining = remaining[: -self.tail] + still
            time.sleep(poll)
        return DrainResult(time.monotonic() - t_start, first, exact, polls)


class CheckedQueryProbe:
    """The SQL probe, cross-checked: once it reports zero, a sample of the captured ids must be done too.

    A young `/query` implementation could count wrongly; if the sample disagrees, the wait continues with
    output polling and the result says so.
    """

    name = "query+check"

    def __init__(self, query: QueryProbe, outputs: OutputsProbe) -> None:
        self.query = query
        self.outputs = outputs
        self.disagreements = 0

    def describe(self) -> str:
        return (
            f"{self.query.describe()}, then {self.outputs.sample} captured ids checked through "
            "`GET /restate/invocation/{id}/output`"
        )

    def wait_drained(self, ids: Sequence[str], t_start: float, timeout: float, poll: float) -> DrainResult:
        d = self.query.wait_drained(ids, t_start, timeout, poll)
        if d.seconds is None or not ids:
            return d
        step = max(1, len(ids) // self.outputs.sample)
        if not self.outputs.pending(ids[::step]):
            return d
        self.disagreements += 1
        rest = self.outputs.wait_drained(ids, t_start, timeout, poll)
        return DrainResult(rest.seconds, d.backlog_at_end, d.backlog_exact, d.polls + rest.polls)


def choose_probe(kind: str, admin_url: str, ingress_url: str) -> DrainProbe:
    """`query`, `outputs`, or `auto`: the SQL endpoint (cross-checked) if it answers, else outputs."""
    if kind == "query":
        return QueryProbe(admin_url)
    if kind == "outputs":
        return OutputsProbe(ingress_url)
    q = QueryProbe(admin_url)
    return CheckedQueryProbe(q, OutputsProbe(ingress_url)) if q.works() else OutputsProbe(ingress_url)
