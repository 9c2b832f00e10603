"""Restate's TOML configuration file (`restate-server --config-file`), read into `ServerConfig` values.

Options pyrestate has are taken under their Restate names; `[[ingress.kafka-clusters]]` defines the clusters
subscriptions read from. A key pyrestate does not know is reported (the caller warns), never fatal: the same
file can serve both servers.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyrestate.server.config import ConfigError
from pyrestate.server.subscriptions.model import KafkaCluster, cluster_from_config

# Restate's dotted key → ServerConfig field.
RESTATE_KEYS: dict[str, str] = {
    "base-dir": "data_dir",
    "default-num-partitions": "partitions",
    "log-format": "log_format",
    "default-journal-retention": "journal_retention_ms",
    "default-idempotency-retention": "idempotency_retention_ms",
    "default-workflow-completion-retention": "workflow_completion_retention_ms",
    "default-retry-policy.initial-interval": "retry_initial_interval_ms",
    "default-retry-policy.exponentiation-factor": "retry_exponentiation_factor",
    "default-retry-policy.max-attempts": "retry_max_attempts",
    "default-retry-policy.max-interval": "retry_max_interval_ms",
    "default-retry-policy.on-max-attempts": "retry_on_max_attempts",
    "worker.invoker.inactivity-timeout": "inactivity_timeout_ms",
    "worker.invoker.abort-timeout": "abort_timeout_ms",
    "worker.invoker.message-size-limit": "message_size_limit",
    "worker.invoker.request-identity-private-key-pem-file": "request_identity_private_key_pem_file",
    "admin.bind-address": "admin_bind",
    "admin.advertised-admin-endpoint": "admin_url",
    "admin.query-engine.memory-size": "query_memory_bytes",
    "ingress.bind-address": "ingress_bind",
    "ingress.advertised-ingress-endpoint": "ingress_url",
    "ingress.request-size-limit": "max_request_body_bytes",
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_UNITS.update({"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4})
_SIZE_FIELDS = {"message_size_limit", "query_memory_bytes", "max_request_body_bytes"}


def _text(field: str, value: Any) -> str:
    """A TOML value as the option text config.py parses ("32.0 MiB" as Restate writes sizes → bytes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if field in _SIZE_FIELDS and isinstance(value, str) and (m := _SIZE.match(value)):
        return str(int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()]))
    if field == "log_format":
        return "json" if str(value).lower() == "json" else "text"
    return str(value)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load(path: Path | str) -> tuple[dict[str, str], tuple[KafkaCluster, ...], list[str]]:
    """(option texts by field, Kafka clusters, keys pyrestate does not use)."""
    try:
        doc = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read the config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: {e}") from None
    ingress = doc.get("ingress")
    raw_clusters = ingress.pop("kafka-clusters", []) if isinstance(ingress, dict) else []
    if not isinstance(raw_clusters, list):
        raise ConfigError(f"config file {path}: ingress.kafka-clusters must be an array of tables")
    clusters: list[KafkaCluster] = []
    for entry in raw_clusters:
        try:
            clusters.append(cluster_from_config(entry if isinstance(entry, dict) else {}))
        except ValueError as e:
            raise ConfigError(f"config file {path}: {e}") from None
    names = [c.name for c in clusters]
    if len(set(names)) != len(names):
        raise ConfigError(f"config file {path}: ingress.kafka-clusters names must be unique")
    values: dict[str, str] = {}
    unknown: list[str] = []
    for key, value in _flatten(doc).items():
        field = RESTATE_KEYS.get(key)
        if field is None:
            unknown.append(key)
        else:
            values[field] = _text(field, value)
    return values, tuple(clusters), unknown
