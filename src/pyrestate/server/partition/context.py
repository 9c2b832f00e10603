"""What `apply` may consult besides storage: time, partitioning, the schema and the server's policies.
All of it is plain data or a pure lookup, so applying a command stays deterministic. Time is read once by
whoever builds the context (the processor, per batch); nothing in `apply` reads a clock or draws a random
number: new invocation ids come with the command (ingress) or are derived from the caller
(`InvocationId.for_call`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Protocol

from pyrestate.protocol.ids import InvocationId
from pyrestate.server.core_api import HandlerSchema, ServiceSchema
from pyrestate.server.partition.retry import RetryPolicy
from pyrestate.server.storage.records import Target

DAY_MS = 24 * 3600 * 1000


class SchemaView(Protocol):
    def lookup_service(self, name: str) -> ServiceSchema | None: ...


@dataclass(frozen=True, slots=True)
class Policies:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    idempotency_retention_ms: int = DAY_MS
    workflow_completion_retention_ms: int = DAY_MS
    journal_retention_ms: int = DAY_MS


@functools.lru_cache(maxsize=65536)  # every effect and response of an invocation asks again
def partition_of(invocation_id: str, num_partitions: int) -> int:
    """Range partitioning of the 64-bit partition key space (as Restate does)."""
    pk = InvocationId.parse(invocation_id).partition_key
    return (pk * num_partitions) >> 64


def partition_of_key(partition_key: int, num_partitions: int) -> int:
    return (partition_key * num_partitions) >> 64


@dataclass(frozen=True, slots=True)
class ApplyContext:
    partition: int
    num_partitions: int
    now: int  # epoch ms
    schema: SchemaView
    policies: Policies = field(default_factory=Policies)

    def handler_schema(self, target: Target) -> tuple[ServiceSchema | None, HandlerSchema | None]:
        svc = self.schema.lookup_service(target.service)
        return svc, (svc.handlers.get(target.handler) if svc is not None else None)

    def retry_policy(self, target: Target) -> RetryPolicy:
        svc, h = self.handler_schema(target)
        policy = self.policies.retry
        for s in (svc, h):
            if s is not None:
                policy = policy.merged(
                    initial_interval_ms=s.retry_initial_interval_ms,
                    exponentiation_factor=s.retry_exponentiation_factor,
                    max_interval_ms=s.retry_max_interval_ms,
                    max_attempts=s.retry_max_attempts,
                    on_max_attempts=s.retry_on_max_attempts,
                )
        return policy

    def journal_retention(self, target: Target) -> int:
        svc, h = self.handler_schema(target)
        value = _first(h.journal_retention_ms if h else None, svc.journal_retention_ms if svc else None)
        return value if value is not None else self.policies.journal_retention_ms

    def completion_retention(self, target: Target, has_idempotency_key: bool) -> int:
        """Restate's compute_retention: a workflow run or an idempotency key keeps the completion for the
        workflow / idempotency retention; anything else is kept as long as its journal (0: dropped)."""
        svc, h = self.handler_schema(target)
        if target.workflow_run:
            value = _first(
                h.workflow_completion_retention_ms if h else None,
                svc.workflow_completion_retention_ms if svc else None,
            )
            return value if value is not None else self.policies.workflow_completion_retention_ms
        if has_idempotency_key:
            value = _first(
                h.idempotency_retention_ms if h else None, svc.idempotency_retention_ms if svc else None
            )
            return value if value is not None else self.policies.idempotency_retention_ms
        return self.journal_retention(target)


def _first(*values: int | None) -> int | None:
    for v in values:
        if v is not None:
            return v
    return None
