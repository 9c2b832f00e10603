"""Server configuration: one dataclass, its defaults (Restate 1.7's), and the flag / env var table.

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

from pyrestate.server.ingress.durations import format_friendly_ms, parse_duration_ms
from pyrestate.server.storage.factory import check_storage_spec

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
    max_request_body_bytes: int = 32 * 1024 * 1024
    # Address advertised by the admin `/version` endpoint; derived from `ingress_bind` when unset.
    ingress_url: str | None = None
    log_level: str = "info"
    # Ed25519 private key (PKCS#8 PEM) signing every request to deployments (Restate's request identity).
    request_identity_private_key_pem_file: Path | None = None
    # Storage backend: "sqlite" (in data_dir) or a postgresql:// URL (partitions owned through leases).
    storage: str = "sqlite"
    node_id: str | None = None  # this node's name in partition leases (PostgreSQL); default: host name
    workers: int = 1  # processes sharing the partitions (pyrestate.server.cluster); 1: all in this one
    extra: Mapping[str, str] = field(default_factory=dict)

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
        if self.parse is _duration:
            return format_friendly_ms(value)
        if self.parse is _on_max_attempts:
            return str(value).lower()
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
        "max_request_body_bytes", "--max-request-body", _size, "Largest accepted ingress body (413 above)."
    ),
    Option("ingress_url", "--ingress-url", str, "Ingress URL advertised by the admin /version endpoint."),
    Option("log_level", "--log-level", str, "debug, info, warning or error."),
    Option(
        "request_identity_private_key_pem_file",
        "--request-identity-private-key-pem-file",
        _identity_key_file,
        "Ed25519 private key (PEM) signing requests to deployments.",
    ),
    Option("storage", "--storage", _storage, "sqlite, or a postgresql://… URL to run several nodes."),
    Option("node_id", "--node-id", str, "Name of this node in partition leases (default: host name)."),
    Option("workers", "--workers", _positive_int, "Processes sharing the partitions (SQLite)."),
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
