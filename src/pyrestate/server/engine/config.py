"""Engine settings, with Restate 1.7's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pyrestate.server.invoker.retry import RetryPolicy

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class EngineConfig:
    data_dir: Path = Path(".pyrestate")
    partitions: int = 4
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    inactivity_timeout_ms: int = 60_000  # 0: request/response, suspend at every unresolved await
    abort_timeout_ms: int = 600_000
    idempotency_retention_ms: int = DAY_MS
    workflow_completion_retention_ms: int = DAY_MS
    journal_retention_ms: int = DAY_MS
    concurrency_per_deployment: int = 1000
    # Sent invocations yield to a busy ingress (see invoker.service.InvokerConfig).
    background_concurrency: int = 2
    ingress_busy_s: float = 0.1
    background_slot_s: float = 0.1
    disable_eager_state: bool = False
    request_identity_private_key_pem_file: Path | None = None  # sign requests to deployments
    message_size_limit: int = 32 * 1024 * 1024  # larger messages from a deployment fail the invocation
    key_size_limit: int = 16 * 1024  # longer object keys fail the invocation (UTF-8 bytes)
    storage: str = "sqlite"  # or a postgresql:// URL (see storage.factory)
    node_id: str | None = None

    @property
    def database_path(self) -> Path:
        return Path(self.data_dir) / "pyrestate.sqlite3"
