"""The boundary between pyrestate's HTTP surfaces (ingress, admin) and its engine.

The ingress and admin apps translate HTTP into these calls and these results back into HTTP; the engine
(storage, partition state machine, invoker) implements `ServerCore`. Neither side knows the other's
internals, so each is testable on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, overload

# One vocabulary for SDK and server: the manifest's service and handler types, re-exported.
from pyrestate.protocol.manifest import HandlerType as HandlerType
from pyrestate.protocol.manifest import ServiceType as ServiceType
from pyrestate.protocol.outcome import Failure as Failure  # the one failure type: the protocol codec's

# ---------------------------------------------------------------- vocabulary


@dataclass(frozen=True, slots=True)
class InvocationTarget:
    service: str
    handler: str
    key: str | None = None  # None for plain services; "" is a valid object key


@dataclass(frozen=True, slots=True)
class Success:
    value: bytes
    content_type: str | None = None  # the handler's declared output content type, if the body needs one


Outcome = Success | Failure


@overload
def as_outcome(result: bytes | Failure) -> Outcome: ...
@overload
def as_outcome(result: bytes | Failure | None) -> Outcome | None: ...
def as_outcome(result: bytes | Failure | None) -> Outcome | None:
    """A result read by `protocol.outcome.read_result` as the engine's outcome (None stays void)."""
    return Success(result) if isinstance(result, bytes) else result


def as_result(outcome: Outcome | None) -> bytes | Failure | None:
    """The engine's outcome as `protocol.outcome.write_result` takes it."""
    return outcome.value if isinstance(outcome, Success) else outcome


# ---------------------------------------------------------------- ingress requests and answers


@dataclass(frozen=True, slots=True)
class IngressInvocation:
    target: InvocationTarget
    body: bytes
    headers: tuple[tuple[str, str], ...]  # forwarded to the handler (Input command headers)
    idempotency_key: str | None = None  # None: the engine generates one (so /output works), as Restate does
    user_supplied_idempotency_key: bool = False
    delay_ms: int | None = None  # sends only
    trace: str | None = None  # span context when traced (pyrestate.server.tracing)


class SubmitStatus(enum.Enum):
    ACCEPTED = "Accepted"
    PREVIOUSLY_ACCEPTED = "PreviouslyAccepted"


@dataclass(frozen=True, slots=True)
class SendReceipt:
    invocation_id: str
    status: SubmitStatus
    execution_time_ms: int | None = None  # set for delayed sends (epoch ms)


@dataclass(frozen=True, slots=True)
class InvocationResult:
    invocation_id: str
    outcome: Outcome
    # Set when the completion is retained (idempotency key / workflow); the ingress then answers with the
    # `idempotency-expires` header. An attach that waited live for the completion leaves it None.
    expires_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ById:
    invocation_id: str


@dataclass(frozen=True, slots=True)
class ByIdempotencyKey:
    service: str
    handler: str
    idempotency_key: str
    key: str | None = None


@dataclass(frozen=True, slots=True)
class ByWorkflow:
    workflow: str
    key: str


InvocationQuery = ById | ByIdempotencyKey | ByWorkflow


class NotReady(Exception):
    """The invocation exists but has not completed (ingress: 470)."""


class NotFound(Exception):
    """No such invocation / service / deployment (404)."""


class Conflict(Exception):
    """The operation contradicts the current state, e.g. killing a completed invocation (409)."""


class BadRequest(Exception):
    """Invalid input detected by the engine (400)."""


class Unavailable(Exception):
    """The engine cannot accept work right now, e.g. storage is full or read-only (503)."""


class Refused(Exception):
    """An operation refused with a status of its own (restart-as-new: 410 journal gone, 422 workflow,
    425 not started yet)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- schema (what registration stores)


@dataclass(frozen=True, slots=True)
class HandlerSchema:
    name: str
    ty: HandlerType | None  # None for plain services
    input_required: bool = False
    input_content_type: str | None = "*/*"  # None: the handler takes no input (manifest `"input":{}`)
    input_json_schema: object | None = None
    output_content_type: str | None = "application/json"
    output_set_content_type_if_empty: bool = False
    output_json_schema: object | None = None
    public: bool = True
    documentation: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Per-handler overrides in milliseconds / counts; None: inherit from service / server defaults.
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    journal_retention_ms: int | None = None
    idempotency_retention_ms: int | None = None
    workflow_completion_retention_ms: int | None = None
    enable_lazy_state: bool | None = None
    retry_max_attempts: int | None = None
    retry_initial_interval_ms: int | None = None
    retry_max_interval_ms: int | None = None
    retry_exponentiation_factor: float | None = None
    retry_on_max_attempts: str | None = None  # "PAUSE" | "KILL"


@dataclass(frozen=True, slots=True)
class ServiceSchema:
    name: str
    ty: ServiceType
    handlers: Mapping[str, HandlerSchema]
    deployment_id: str
    revision: int
    public: bool = True
    documentation: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    journal_retention_ms: int | None = None
    idempotency_retention_ms: int | None = None
    workflow_completion_retention_ms: int | None = None
    enable_lazy_state: bool | None = None
    retry_max_attempts: int | None = None
    retry_initial_interval_ms: int | None = None
    retry_max_interval_ms: int | None = None
    retry_exponentiation_factor: float | None = None
    retry_on_max_attempts: str | None = None


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    id: str  # dp_1…
    uri: str
    use_http_11: bool
    protocol_mode: str  # "BIDI_STREAM" | "REQUEST_RESPONSE"
    min_protocol_version: int
    max_protocol_version: int
    sdk_version: str | None
    additional_headers: Mapping[str, str]
    created_at_ms: int
    services: tuple[ServiceSchema, ...]


@dataclass(frozen=True, slots=True)
class DeploymentRegistration:
    """A manifest already fetched by discovery and validated; the engine decides new vs existing."""

    uri: str
    use_http_11: bool
    additional_headers: Mapping[str, str]
    protocol_mode: str
    min_protocol_version: int
    max_protocol_version: int
    sdk_version: str | None
    services: Sequence[ServiceSchema]  # deployment_id/revision are filled in by the engine
    force: bool = False
    dry_run: bool = False
    # Allow incompatible schema changes without overwriting an existing deployment (admin `breaking`).
    breaking: bool = False


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    deployment: DeploymentRecord
    created: bool  # False: the same URI was registered before (admin answers 200 instead of 201)


@dataclass(frozen=True, slots=True)
class ServicePatch:
    public: bool | None = None
    idempotency_retention_ms: int | None = None
    journal_retention_ms: int | None = None
    workflow_completion_retention_ms: int | None = None
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None


class InvocationCommand(enum.Enum):
    CANCEL = "cancel"
    KILL = "kill"
    PURGE = "purge"
    PURGE_JOURNAL = "purge-journal"
    PAUSE = "pause"
    RESUME = "resume"


class CommandOutcome(enum.Enum):
    DONE = "done"  # admin answers 200
    ACCEPTED = "accepted"  # admin answers 202


# ---------------------------------------------------------------- the engine


class ServerCore(Protocol):
    # ingress
    def lookup_service(self, name: str) -> ServiceSchema | None:
        """Latest revision of a service, from memory (no IO): used to validate every ingress request."""
        ...

    async def call(self, invocation: IngressInvocation) -> InvocationResult:
        """Submit and wait for the outcome. The submission is durable before this starts waiting.
        A second call to a workflow's run handler returns Failure(409, "the workflow method was already
        invoked") with the original id; a repeated idempotency key attaches to the original invocation."""
        ...

    async def send(self, invocation: IngressInvocation) -> SendReceipt:
        """Submit without waiting; returns once the submission is committed."""
        ...

    async def attach(self, query: InvocationQuery) -> InvocationResult:
        """Wait for the outcome of an existing invocation. Raises NotFound."""
        ...

    async def get_output(self, query: InvocationQuery) -> InvocationResult:
        """Outcome if completed. Raises NotReady (470) or NotFound (404)."""
        ...

    async def complete_awakeable(self, awakeable_id: str, outcome: Outcome) -> None:
        """Raises BadRequest for an id that does not parse."""
        ...

    # admin
    async def register_deployment(self, registration: DeploymentRegistration) -> RegistrationResult:
        """Raises Conflict when services changed incompatibly and force is false."""
        ...

    async def list_deployments(self) -> list[DeploymentRecord]: ...

    async def get_deployment(self, deployment_id: str) -> DeploymentRecord:
        """Raises NotFound."""
        ...

    async def delete_deployment(self, deployment_id: str) -> None: ...

    async def update_deployment(
        self, deployment_id: str, registration: DeploymentRegistration
    ) -> DeploymentRecord:
        """Move a deployment to the rediscovered address, transport and headers of `registration`; its
        services are replaced only when `registration.force` (admin `overwrite`). Raises NotFound."""
        ...

    def list_services(self) -> list[ServiceSchema]: ...

    async def update_service(self, name: str, patch: ServicePatch) -> ServiceSchema: ...

    async def invocation_command(
        self, invocation_id: str, command: InvocationCommand, *, deployment_id: str | None = None
    ) -> CommandOutcome:
        """cancel/kill/purge/pause/resume. Raises NotFound, Conflict (e.g. already completed), BadRequest."""
        ...

    async def restart_as_new(
        self, invocation_id: str, *, from_index: int | None = None, deployment: str | None = None
    ) -> str:
        """A new invocation from a completed one's input (and its journal up to `from_index`, included);
        `deployment` is "keep", "latest" or a deployment id. Returns the new invocation id. Raises
        NotFound, Conflict (still running), BadRequest, Refused."""
        ...

    async def set_state(self, service: str, key: str, new_state: Mapping[str, bytes]) -> None:
        """Replace the whole state of an object key."""
        ...

    async def start(self) -> None:
        """Open storage, recover (re-arm timers, resume in-flight invocations) and start the invoker."""
        ...

    async def stop(self) -> None: ...

    # SQL introspection (admin `/query`); an implementation without it makes `/query` answer 501.
    def query_snapshot(self) -> QuerySnapshot:
        """A consistent read-only view of committed storage, taken now; cheap to create on the event loop
        (the reads happen later, on a worker thread). See `pyrestate.server.query.source` for ready-made
        implementations (`SqliteSnapshot(storage.path)`)."""
        ...


class QuerySnapshot(Protocol):
    """Committed storage as of one point in time, read from one worker thread, then closed."""

    # Invocations with an attempt running right now; None: unknown (derived from the status records).
    in_flight: frozenset[str] | None
    now_ms: int  # when the snapshot was taken (epoch ms)

    def scan(self, table: str) -> list[tuple[tuple[str | int | bytes, ...], bytes]]:
        """All rows of a storage table (`storage.api.TABLES`) as (key columns, value), in key order."""
        ...

    def close(self) -> None: ...
