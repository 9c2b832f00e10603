"""Server configuration: one dataclass, its defaults (Restate 1.7's), and the flag / env var table.

`ServerConfig` is the one configuration object: the CLI and the environment fill it, the engine reads it,
and the invoker gets its own parameters from it. `partitions` defaults to 24, the official server's
default (and what `pyrestate server` and its benchmarks have always run with); tests that want fewer set it.

Every option is a `--flag` of `pyrestate server` and a `PYRESTATE_<NAME>` environment variable (the flag
wins). Durations accept Restate's friendly format ("500ms", "1m", "1d") and ISO 8601 ("PT1M").
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrestate.server import logs
from pyrestate.server.durations import format_friendly_ms, parse_duration_ms
from pyrestate.server.partition.retry import RetryPolicy
from pyrestate.server.storage.factory import check_storage_spec
from pyrestate.server.subscriptions.model import KafkaCluster

ENV_PREFIX = "PYRESTATE_"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ServerConfig:
    data_dir: Path = Path(".pyrestate")
    ingress_bind: str = "127.0.0.1:8080"
    admin_bind: str = "127.0.0.1:9070"
    partitions: int = 24
    # default retry policy of invocations (services and handlers may override it)
    retry_initial_interval_ms: int = 500
    retry_exponentiation_factor: float = 2.0
    retry_max_attempts: int = 70
    retry_max_interval_ms: int = 60_000
    retry_on_max_attempts: str = "PAUSE"  # "PAUSE" | "KILL"
    inactivity_timeout_ms: int = 60_000
    abort_timeout_ms: int = 600_000
    journal_retention_ms: int = 86_400_000
    idempotency_retention_ms: int = 86_400_000
    workflow_completion_retention_ms: int = 86_400_000
    disable_eager_state: bool = False
    # Offer service protocol V7 to deployments (Restate 1.7 has it behind the same experimental switch).
    experimental_enable_protocol_v7: bool = False
    # Flow control: concurrency limits per scope (`PUT /limits/rules`) are enforced, and the ingress takes
    # scoped invocations (Restate 1.7 has it behind the same experimental switch).
    experimental_enable_vqueues: bool = False
    max_request_body_bytes: int = 32 * 1024 * 1024
    # Origins whose pages may read ingress answers (CORS, with credentials); "*" reflects any origin, as
    # Restate does. None by default.
    ingress_cors_origins: tuple[str, ...] = ()
    # Limits that fail at once instead of retrying (see the README's "Limits").
    message_size_limit: int = 32 * 1024 * 1024
    key_size_limit: int = 16 * 1024
    max_request_headers: int = 100
    max_request_headers_bytes: int = 512 * 1024
    # HTTP/1.1 connections of the ingress and admin ports (each port on its own)
    http_header_timeout_ms: int = 30_000  # to receive a request head (and a body up to 1 MiB)
    http_idle_timeout_ms: int = 3_600_000  # between requests of a keep-alive connection
    max_connections: int = 10_000  # open connections per port; beyond, 503 and close
    # Address advertised by the admin `/version` endpoint; derived from `ingress_bind` when unset.
    ingress_url: str | None = None
    # Address the console is opened at (its pages' Origin) when not http://<admin_bind>, e.g. behind a proxy.
    admin_url: str | None = None
    log_level: str = "info"
    log_format: str = "text"  # "text" | "json" (one object per line)
    log_filter: str = ""  # other libraries' level and per-logger levels, e.g. "warning,hypercorn=debug"
    # Ed25519 private key (PKCS#8 PEM) signing every request to deployments (Restate's request identity).
    request_identity_private_key_pem_file: Path | None = None
    # Storage backend: "sqlite" (in data_dir) or a postgresql:// URL (partitions owned through leases).
    storage: str = "sqlite"
    node_id: str | None = None  # this node's name in partition leases (PostgreSQL); default: host name
    workers: int = 1  # processes sharing the partitions (pyrestate.server.cluster); 1: all in this one
    # Nodes on PostgreSQL (cluster/pg_node.py): set `node_bind` to join the cluster of all nodes on the same
    # database, each owning a share of the partition groups; unset: the whole server is one node (standby).
    node_bind: str | None = None  # address the inter-node transport listens on
    advertised_url: str | None = None  # how other nodes reach it (tcp://host:port); default: node_bind
    lease_ttl_ms: int = 6000  # membership heartbeat and partition lease lifetime
    partition_groups: int = 8  # unit of ownership between nodes: contiguous ranges of partitions
    # Engine tuning without a flag. Sent invocations yield to a busy ingress (see invoker.service).
    concurrency_per_deployment: int = 1000
    background_concurrency: int = 2
    ingress_busy_s: float = 0.1
    background_slot_s: float = 0.1
    # All `/query` and console SQL together (Restate's admin.query-engine.memory-size), split between the
    # queries that may run at once.
    query_memory_bytes: int = 1024**3
    # Deployment addresses (pyrestate.server.deployments): an allow list overriding the deny list; the deny
    # list None means its default (link-local and cloud metadata addresses).
    deployment_allow: tuple[str, ...] = ()
    deployment_deny: tuple[str, ...] | None = None
    # Start although commits acknowledged before the last stop are known to be lost (SQLite).
    accept_data_loss: bool = False
    # OTLP collector traces are exported to (pyrestate.server.tracing); None: no tracing, nothing recorded.
    tracing_endpoint: str | None = None
    # `[[ingress.kafka-clusters]]` of the config file (no flag): what subscriptions may read from.
    kafka_clusters: tuple[KafkaCluster, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def database_path(self) -> Path:
        return Path(self.data_dir) / "pyrestate.sqlite3"

    @property
    def lock_note(self) -> str:
        """Who holds the data dir, for a second server refused by its lock."""
        return f"ingress {self.ingress_bind}, admin {self.admin_bind}"

    @property
    def retry_policy(self) -> RetryPolicy:
        """The default retry policy of invocations (services and handlers may override it)."""
        return RetryPolicy(
            initial_interval_ms=self.retry_initial_interval_ms,
            exponentiation_factor=self.retry_exponentiation_factor,
            max_interval_ms=self.retry_max_interval_ms,
            max_attempts=self.retry_max_attempts,
            on_max_attempts=self.retry_on_max_attempts.lower(),
        )

    @property
    def ingress_endpoint(self) -> str:
        if self.ingress_url:
            return self.ingress_url if self.ingress_url.endswith("/") else self.ingress_url + "/"
        return f"http://{self.ingress_bind}/"


def parse_bind(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6) → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"bad bind address {value!r}: expected host:port")
    return host.strip("[]"), int(port)


def _duration(value: str) -> int:
    try:
        ms = parse_duration_ms(value)
    except ValueError as e:
        raise ConfigError(f"bad duration {value!r}: {e}") from None
    if ms < 0:
        raise ConfigError(f"bad duration {value!r}: must not be negative")
    return ms


def _positive_duration(value: str) -> int:
    ms = _duration(value)
    if ms == 0:
        raise ConfigError(f"bad duration {value!r}: must be positive")
    return ms


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"expected an integer, got {value!r}") from None
    if n <= 0:
        raise ConfigError(f"expected a positive integer, got {value!r}")
    return n


def _factor(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise ConfigError(f"expected a number, got {value!r}") from None
    if f < 1.0:
        raise ConfigError(f"the exponentiation factor must be >= 1, got {value!r}")
    return f


def _on_max_attempts(value: str) -> str:
    v = value.strip().upper()
    if v not in ("PAUSE", "KILL"):
        raise ConfigError(f"expected 'pause' or 'kill', got {value!r}")
    return v


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"expected a boolean, got {value!r}")


def _storage(value: str) -> str:
    try:
        return check_storage_spec(value.strip())
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _identity_key_file(value: str) -> Path:
    from pyrestate.server.invoker.identity import IdentityKeyFileError, RequestSigner

    try:
        RequestSigner.from_pem_file(value)  # fail at start-up, not on the first request
    except IdentityKeyFileError as e:
        raise ConfigError(str(e)) from None
    return Path(value)


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _origins(value: str) -> tuple[str, ...]:
    items = _list(value)
    for item in items:
        if item != "*" and "://" not in item:
            raise ConfigError(f"expected '*' or origins like https://app.example.com, got {item!r}")
    return items


def _patterns(value: str) -> tuple[str, ...]:
    from pyrestate.server.deployments import check_pattern

    try:
        return tuple(check_pattern(item) for item in _list(value))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _log_level(value: str) -> str:
    try:
        return logs.check_level(value)
    except logs.LogConfigError as e:
        raise ConfigError(str(e)) from None


def _log_format(value: str) -> str:
    try:
        return logs.check_format(value)
    except logs.LogConfigError as e:
        raise ConfigError(str(e)) from None


def _log_filter(value: str) -> str:
    try:
        logs.parse_filter(value)
    except logs.LogConfigError as e:
        raise ConfigError(str(e)) from None
    return value


def _tracing_endpoint(value: str) -> str:
    from pyrestate.server.tracing import TracingConfigError, check_endpoint

    try:
        return check_endpoint(value)
    except TracingConfigError as e:
        raise ConfigError(str(e)) from None


def _bind(value: str) -> str:
    parse_bind(value)
    return value


def _size(value: str) -> int:
    v = value.strip().lower()
    for suffix, mult in (
        ("kib", 1024),
        ("mib", 1024**2),
        ("gib", 1024**3),
        ("kb", 1000),
        ("mb", 1000**2),
        ("gb", 1000**3),
        ("b", 1),
    ):
        if v.endswith(suffix):
            return _positive_int(v[: -len(suffix)].strip()) * mult
    return _positive_int(v)


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: its dataclass field, flag, env var, parser and help text."""

    field: str
    flag: str
    parse: Callable[[str], Any]
    help: str
    is_flag: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.lstrip("-").replace("-", "_").upper()

    def show_default(self, config: ServerConfig) -> str:
        value = getattr(config, self.field)
        if self.parse is _duration or self.parse is _positive_duration:
            return format_friendly_ms(value)
        if self.parse is _on_max_attempts:
            return str(value).lower()
        if self.field == "deployment_deny" and value is None:
            from pyrestate.server.deployments import DEFAULT_DENY

            return ",".join(DEFAULT_DENY)
        if isinstance(value, tuple):
            return ",".join(value)
        return str(value)


OPTIONS: tuple[Option, ...] = (
    Option("data_dir", "--data-dir", Path, "Directory of the server's data."),
    Option("ingress_bind", "--ingress-bind", _bind, "host:port of the ingress HTTP API."),
    Option("admin_bind", "--admin-bind", _bind, "host:port of the admin HTTP API."),
    Option("partitions", "--partitions", _positive_int, "Number of partitions invocations are spread over."),
    Option("retry_initial_interval_ms", "--retry-initial-interval", _duration, "First retry delay."),
    Option(
        "retry_exponentiation_factor", "--retry-exponentiation-factor", _factor, "Growth of retry delays."
    ),
    Option("retry_max_attempts", "--retry-max-attempts", _positive_int, "Attempts before on-max-attempts."),
    Option("retry_max_interval_ms", "--retry-max-interval", _duration, "Upper bound of a retry delay."),
    Option("retry_on_max_attempts", "--retry-on-max-attempts", _on_max_attempts, "pause or kill."),
    Option("inactivity_timeout_ms", "--inactivity-timeout", _duration, "Idle time before suspending."),
    Option(
        "abort_timeout_ms", "--abort-timeout", _duration, "Time after the inactivity timeout before abort."
    ),
    Option("journal_retention_ms", "--journal-retention", _duration, "Retention of completed journals."),
    Option(
        "idempotency_retention_ms", "--idempotency-retention", _duration, "Retention of idempotent results."
    ),
    Option(
        "workflow_completion_retention_ms",
        "--workflow-completion-retention",
        _duration,
        "Retention of workflow results.",
    ),
    Option(
        "disable_eager_state", "--disable-eager-state", _bool, "Send state lazily to objects.", is_flag=True
    ),
    Option(
        "experimental_enable_protocol_v7",
        "--experimental-enable-protocol-v7",
        _bool,
        "Offer service protocol V7 to deployments (a preview in Restate 1.7 too).",
        is_flag=True,
    ),
    Option(
        "experimental_enable_vqueues",
        "--experimental-enable-vqueues",
        _bool,
        "Enforce the concurrency limits of the rule book per scope and take scoped ingress invocations "
        "(a preview in Restate 1.7 too).",
        is_flag=True,
    ),
    Option(
        "max_request_body_bytes", "--max-request-body", _size, "Largest accepted ingress body (413 above)."
    ),
    Option(
        "ingress_cors_origins",
        "--ingress-cors-origins",
        _origins,
        "Comma-separated origins whose pages may call the ingress (CORS); '*' for any, as Restate does.",
    ),
    Option(
        "message_size_limit",
        "--message-size-limit",
        _size,
        "Largest message from a deployment; above it the invocation fails (not retried).",
    ),
    Option(
        "key_size_limit",
        "--key-size-limit",
        _size,
        "Longest object key in UTF-8 bytes (ingress 400; calls fail the callee).",
    ),
    Option(
        "max_request_headers",
        "--max-request-headers",
        _positive_int,
        "Most header fields of an ingress request (431 above).",
    ),
    Option(
        "max_request_headers_bytes",
        "--max-request-headers-size",
        _size,
        "Largest ingress request header section (431 above).",
    ),
    Option(
        "http_header_timeout_ms",
        "--http-header-timeout",
        _positive_duration,
        "Time to receive a request head (408 and close after).",
    ),
    Option(
        "http_idle_timeout_ms",
        "--http-idle-timeout",
        _positive_duration,
        "Idle time after which a keep-alive connection is closed.",
    ),
    Option(
        "max_connections",
        "--max-connections",
        _positive_int,
        "Open connections per API port; more are refused with 503.",
    ),
    Option("ingress_url", "--ingress-url", str, "Ingress URL advertised by the admin /version endpoint."),
    Option(
        "admin_url",
        "--admin-url",
        str,
        "URL the console is opened at, when not http://<admin-bind> (its forms check the Origin against it).",
    ),
    Option("log_level", "--log-level", _log_level, "pyrestate's own loggers: debug, info, warning or error."),
    Option("log_format", "--log-format", _log_format, "text, or json (one JSON object per line)."),
    Option(
        "log_filter",
        "--log-filter",
        _log_filter,
        "Other libraries' level and per-logger levels, e.g. 'info,hypercorn=debug' (default: warning).",
    ),
    Option(
        "request_identity_private_key_pem_file",
        "--request-identity-private-key-pem-file",
        _identity_key_file,
        "Ed25519 private key (PEM) signing requests to deployments.",
    ),
    Option("storage", "--storage", _storage, "sqlite, or a postgresql://… URL to run several nodes."),
    Option("node_id", "--node-id", str, "Name of this node in partition leases (default: host name)."),
    Option("workers", "--workers", _positive_int, "Processes sharing the partitions (SQLite)."),
    Option(
        "node_bind",
        "--node-bind",
        _bind,
        "With PostgreSQL: join the cluster of nodes on that database; inter-node address to listen on.",
    ),
    Option(
        "advertised_url",
        "--advertised-url",
        str,
        "How other nodes reach this one (tcp://host:port); default: the --node-bind address.",
    ),
    Option(
        "lease_ttl_ms",
        "--lease-ttl",
        _positive_duration,
        "Lifetime of node heartbeats and partition leases; a dead node's partitions move within about 1.5x.",
    ),
    Option(
        "partition_groups",
        "--partition-groups",
        _positive_int,
        "Partition groups balanced over the nodes (at most --partitions).",
    ),
    Option(
        "query_memory_bytes",
        "--query-memory-size",
        _size,
        "Memory of all SQL queries together (/query, console); a query past its share gets 503.",
    ),
    Option(
        "deployment_allow",
        "--deployment-allow",
        _patterns,
        "Comma-separated CIDRs / host names (*.domain) deployments may be at; when set, only these.",
    ),
    Option(
        "deployment_deny",
        "--deployment-deny",
        _patterns,
        "Comma-separated CIDRs / host names deployments may not be at (replaces the default: "
        "link-local and cloud metadata addresses; '' denies nothing).",
    ),
    Option(
        "accept_data_loss",
        "--accept-data-loss",
        _bool,
        "Start even if acknowledged commits were lost with a deleted or damaged WAL (warns with the count).",
        is_flag=True,
    ),
    Option(
        "tracing_endpoint",
        "--tracing-endpoint",
        _tracing_endpoint,
        "OpenTelemetry collector to export invocation traces to: otlp+http://host:4318/v1/traces (OTLP/HTTP) "
        "or http://host:4317 (OTLP/gRPC), as Restate's tracing-endpoint. Off when unset.",
    ),
)


def from_values(values: Mapping[str, str | None], base: ServerConfig | None = None) -> ServerConfig:
    """A config from raw option texts keyed by field name (None: keep the default)."""
    changes: dict[str, Any] = {}
    for opt in OPTIONS:
        raw = values.get(opt.field)
        if raw is None:
            continue
        try:
            changes[opt.field] = opt.parse(raw) if not isinstance(raw, bool) else raw
        except ConfigError as e:
            raise ConfigError(f"{opt.flag} / {opt.env}: {e}") from None
    return dataclasses.replace(base or ServerConfig(), **changes)


def from_env(environ: Mapping[str, str] | None = None) -> ServerConfig:
    env = os.environ if environ is None else environ
    return from_values({opt.field: env.get(opt.env) for opt in OPTIONS})


def options_reference() -> str:
    """The settings as a Markdown table (flag, environment variable, default, meaning): the reference in
    docs/operations.md is this text, and a test keeps the two equal."""
    defaults = ServerConfig()
    lines = ["| flag | environment variable | default | meaning |", "|---|---|---|---|"]
    for opt in OPTIONS:
        default = "off" if opt.is_flag else opt.show_default(defaults)
        lines.append(f"| `{opt.flag}` | `{opt.env}` | `{default}` | {opt.help} |")
    return "\n".join(lines) + "\n"
