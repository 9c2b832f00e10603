"""Small builders shared by scenarios."""

from __future__ import annotations

import json
import uuid
from typing import Any

from pyrestate.testing import Admin, eventually


def new_key() -> str:
    """A fresh object key per test: services keep process-global counters keyed by it."""
    return str(uuid.uuid4())


def to_bytes_list(value: Any) -> list[int]:
    """A JSON value as the Proxy contract carries payloads: a JSON array of byte values."""
    return list(json.dumps(value).encode())


def proxy_request(
    service: str, handler: str, value: Any, key: str | None = None, **extra: Any
) -> dict[str, Any]:
    req: dict[str, Any] = {"serviceName": service, "handlerName": handler, "message": to_bytes_list(value)}
    if key is not None:
        req["virtualObjectKey"] = key
    req.update(extra)
    return req


def wait_journaled(admin: Admin, invocation_id: str, entry_type: str, timeout: float = 20.0) -> None:
    """Wait until the runtime has recorded an entry of `entry_type` (e.g. "Command: Sleep") in the
    invocation's journal, as `sys_journal` shows it."""

    def check() -> None:
        rows = admin.query(
            f"SELECT index FROM sys_journal WHERE id = '{invocation_id}' AND entry_type = '{entry_type}'"
        )
        assert rows, f"no '{entry_type}' in the journal of {invocation_id} yet"

    eventually(check, timeout)
