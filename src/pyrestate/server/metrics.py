"""What an operator watches, in Prometheus' text format at `GET /metrics` on the admin API.

The instruments live in one registry per process (as the engine does: one per process), updated where the
thing happens — ingress requests, commits, attempts, timers — with a counter increment or a histogram
observation (about a microsecond each; a no-op call makes a handful). Invocations by status and service are
not counted as they change: the scrape handler reads them from the store, through the same query path as
`/query` (off the event loop), at most once per `INVOCATIONS_TTL_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST
INVOCATIONS_TTL_S = 5.0

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_LATENESS_BUCKETS = (0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0)

REGISTRY = CollectorRegistry(auto_describe=False)

ingress_requests = Counter(
    "pyrestate_ingress_requests",
    "Ingress HTTP requests answered, by kind (call, send, awakeable, lookup, health) and status code.",
    ["kind", "status"],
    registry=REGISTRY,
)
ingress_latency = Histogram(
    "pyrestate_ingress_request_duration_seconds",
    "Time from an ingress request's arrival to its answer, by kind (a call waits for the handler's result).",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
commit_latency = Histogram(
    "pyrestate_storage_commit_duration_seconds",
    "Duration of one durable commit of a batch of partition commands (fsync included).",
    buckets=_COMMIT_BUCKETS,
    registry=REGISTRY,
)
commit_batch = Histogram(
    "pyrestate_storage_commit_batch_commands",
    "Commands applied in one committed batch.",
    buckets=_BATCH_BUCKETS,
    registry=REGISTRY,
)
commit_failures = Counter(
    "pyrestate_storage_commit_failures", "Commits that failed (the batch was dropped).", registry=REGISTRY
)
attempts = Counter(
    "pyrestate_invoker_attempts",
    "Invocation attempts started against a deployment, by service.",
    ["service"],
    registry=REGISTRY,
)
retries = Counter(
    "pyrestate_invoker_retries",
    "Attempts that retry an earlier failed attempt of the same invocation, by service.",
    ["service"],
    registry=REGISTRY,
)
attempt_failures = Counter(
    "pyrestate_invoker_attempt_failures",
    "Attempts that ended in a failure (to be retried, paused or killed), by service and error code.",
    ["service", "code"],
    registry=REGISTRY,
)
timers_fired = Counter("pyrestate_timers_fired", "Durable timers that came due.", registry=REGISTRY)
timer_lateness = Histogram(
    "pyrestate_timer_lateness_seconds",
    "How late a timer fired after its due time (large after a restart that was down past it).",
    buckets=_LATENESS_BUCKETS,
    registry=REGISTRY,
)


def ingress_kind(path: str) -> str:
    """The label of an ingress path, without parsing it (the router does that later)."""
    if path.startswith("/restate/"):
        rest = path[9:]
        if rest.startswith("awakeables") or rest.startswith("a/"):
            return "awakeable"
        if rest.startswith("health"):
            return "health"
        return "lookup"
    return "send" if path.endswith("/send") else "call"


class _Gauges(Collector):
    """Values read when scraped, from whatever the running server registered (none when it is stopped)."""

    def __init__(self) -> None:
        self.partitions_owned: Callable[[], int] | None = None
        self.timers_in_memory: Callable[[], int] | None = None
        self.attempts_running: Callable[[], int] | None = None
        # (service, status, count), refreshed by the scrape handler from the store (see `invocations_stale`)
        self.invocations: list[tuple[str, str, int]] | None = None
        self._invocations_at = float("-inf")

    def invocations_stale(self) -> bool:
        return time.monotonic() - self._invocations_at >= INVOCATIONS_TTL_S

    def set_invocations(self, counts: Iterable[tuple[str, str, int]]) -> None:
        self.invocations = list(counts)
        self._invocations_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        for name, doc, read in (
            ("pyrestate_partitions_owned", "Partitions this process processes.", self.partitions_owned),
            ("pyrestate_timers_in_memory", "Durable timers due soon, held in memory.", self.timers_in_memory),
            (
                "pyrestate_invoker_attempts_running",
                "Invocation attempts running against deployments now.",
                self.attempts_running,
            ),
        ):
            if read is not None:
                g = GaugeMetricFamily(name, doc)
                g.add_metric([], float(read()))
                yield g
        if self.invocations is not None:
            g = GaugeMetricFamily(
                "pyrestate_invocations",
                "Invocations kept by the server, by service and status (as sys_invocation shows them).",
                labels=["service", "status"],
            )
            for service, status, count in self.invocations:
                g.add_metric([service, status], float(count))
            yield g

    def detach(self) -> None:
        """The server stopped: its gauges are no longer there to read."""
        self.partitions_owned = self.timers_in_memory = self.attempts_running = None
        self.invocations = None
        self._invocations_at = float("-inf")


gauges = _Gauges()
REGISTRY.register(gauges)


def exposition() -> bytes:
    """The current values in Prometheus' text format."""
    return generate_latest(REGISTRY)


def observe_ingress(kind: str, status: int, started: float) -> None:
    ingress_requests.labels(kind, str(status)).inc()
    ingress_latency.labels(kind).observe(time.perf_counter() - started)
