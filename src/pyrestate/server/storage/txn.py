"""The buffered transaction shared by every backend: typed table families over a key/value reader.

Writes are kept in an ordered log (what the backend replays at commit) and in an overlay (so the
transaction reads its own writes). Backends only provide `KVReader` and a way to apply the write log.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyrestate.server.storage.api import Key, KVReader, WriteOp
from pyrestate.server.storage.records import (
    InvocationStatus,
    JournalEntry,
    Promise,
    Timer,
    status_from_json,
    status_to_json,
)


def _has_prefix(key: Key, prefix: Key) -> bool:
    return key[: len(prefix)] == prefix


class BufferedTransaction:
    def __init__(self, reader: KVReader) -> None:
        self._reader = reader
        self._log: list[WriteOp] = []
        self._overlay: dict[str, dict[Key, bytes | None]] = {}
        self._deleted_prefixes: dict[str, list[Key]] = {}

    # ------------------------------------------------------------------ generic layer

    @property
    def writes(self) -> Sequence[WriteOp]:
        return self._log

    def savepoint(self) -> tuple[int, dict[str, dict[Key, bytes | None]], dict[str, list[Key]]]:
        return (
            len(self._log),
            {t: dict(d) for t, d in self._overlay.items()},
            {t: list(p) for t, p in self._deleted_prefixes.items()},
        )

    def rollback_to(self, sp: tuple[int, dict[str, dict[Key, bytes | None]], dict[str, list[Key]]]) -> None:
        n, overlay, prefixes = sp
        del self._log[n:]
        self._overlay, self._deleted_prefixes = overlay, prefixes

    def _get(self, table: str, key: Key) -> bytes | None:
        over = self._overlay.get(table)
        if over is not None and key in over:
            return over[key]
        if any(_has_prefix(key, p) for p in self._deleted_prefixes.get(table, ())):
            return None
        return self._reader.get(table, key)

    def _scan(self, table: str, prefix: Key) -> list[tuple[Key, bytes]]:
        dead = [
            p
            for p in self._deleted_prefixes.get(table, ())
            if _has_prefix(prefix, p) or _has_prefix(p, prefix)
        ]
        rows: dict[Key, bytes] = {}
        # A prefix deletion covering the whole scan range makes the committed rows invisible.
        if not any(_has_prefix(prefix, p) for p in dead):
            for k, v in self._reader.scan(table, prefix):
                if not any(_has_prefix(k, p) for p in dead):
                    rows[k] = v
        for k, ov in self._overlay.get(table, {}).items():
            if _has_prefix(k, prefix):
                if ov is None:
                    rows.pop(k, None)
                else:
                    rows[k] = ov
        return sorted(rows.items())

    def _put(self, table: str, key: Key, value: bytes) -> None:
        self._overlay.setdefault(table, {})[key] = value
        self._log.append(("put", table, key, value))

    def _del(self, table: str, key: Key) -> None:
        self._overlay.setdefault(table, {})[key] = None
        self._log.append(("del", table, key, None))

    def _del_prefix(self, table: str, prefix: Key) -> None:
        over = self._overlay.setdefault(table, {})
        for k in [k for k in over if _has_prefix(k, prefix)]:
            del over[k]
        self._deleted_prefixes.setdefault(table, []).append(prefix)
        self._log.append(("delprefix", table, prefix, None))

    # ------------------------------------------------------------------ invocation status

    def get_invocation_status(self, invocation_id: str) -> InvocationStatus | None:
        raw = self._get("invocation_status", (invocation_id,))
        return None if raw is None else status_from_json(raw)

    def put_invocation_status(self, status: InvocationStatus) -> None:
        self._put("invocation_status", (status.invocation_id,), status_to_json(status))

    def delete_invocation_status(self, invocation_id: str) -> None:
        self._del("invocation_status", (invocation_id,))

    def all_invocation_statuses(self) -> list[InvocationStatus]:
        return [status_from_json(v) for _, v in self._scan("invocation_status", ())]

    # ------------------------------------------------------------------ journal

    def get_journal(self, invocation_id: str) -> list[JournalEntry]:
        return [JournalEntry.decode(v) for _, v in self._scan("journal", (invocation_id,))]

    def put_journal_entry(self, invocation_id: str, index: int, entry: JournalEntry) -> None:
        self._put("journal", (invocation_id, index), entry.encode())

    def delete_journal(self, invocation_id: str) -> None:
        self._del_prefix("journal", (invocation_id,))

    # ------------------------------------------------------------------ state

    def get_state(self, service: str, key: str, name: bytes) -> bytes | None:
        return self._get("state", (service, key, name))

    def get_all_state(self, service: str, key: str) -> list[tuple[bytes, bytes]]:
        return [(bytes(k[2]), v) for k, v in self._scan("state", (service, key))]  # type: ignore[arg-type]

    def put_state(self, service: str, key: str, name: bytes, value: bytes) -> None:
        self._put("state", (service, key, name), value)

    def delete_state(self, service: str, key: str, name: bytes) -> None:
        self._del("state", (service, key, name))

    def delete_all_state(self, service: str, key: str) -> None:
        self._del_prefix("state", (service, key))

    # ------------------------------------------------------------------ inbox and locks

    def push_inbox(self, service: str, key: str, seq: int, invocation_id: str) -> None:
        self._put("inbox", (service, key, seq), invocation_id.encode())

    def peek_inbox(self, service: str, key: str) -> tuple[int, str] | None:
        rows = self._scan("inbox", (service, key))
        if not rows:
            return None
        k, v = rows[0]
        return int(k[2]), v.decode()

    def list_inbox(self, service: str, key: str) -> list[tuple[int, str]]:
        return [(int(k[2]), v.decode()) for k, v in self._scan("inbox", (service, key))]

    def delete_inbox(self, service: str, key: str, seq: int) -> None:
        self._del("inbox", (service, key, seq))

    def get_lock(self, service: str, key: str) -> str | None:
        raw = self._get("locks", (service, key))
        return None if raw is None else raw.decode()

    def put_lock(self, service: str, key: str, invocation_id: str) -> None:
        self._put("locks", (service, key), invocation_id.encode())

    def delete_lock(self, service: str, key: str) -> None:
        self._del("locks", (service, key))

    # ------------------------------------------------------------------ timers

    def put_timer(self, timer: Timer) -> None:
        self._put("timers", (timer.fire_at, timer.timer_id), timer.to_json())

    def delete_timer(self, timer: Timer) -> None:
        self._del("timers", (timer.fire_at, timer.timer_id))

    def all_timers(self) -> list[Timer]:
        return [Timer.from_json(v) for _, v in self._scan("timers", ())]

    # ------------------------------------------------------------------ promises

    def get_promise(self, service: str, key: str, name: str) -> Promise | None:
        raw = self._get("promises", (service, key, name))
        return None if raw is None else Promise.from_json(raw)

    def put_promise(self, service: str, key: str, name: str, promise: Promise) -> None:
        self._put("promises", (service, key, name), promise.to_json())

    def delete_promises(self, service: str, key: str) -> None:
        self._del_prefix("promises", (service, key))

    # ------------------------------------------------------------------ outbox and fsm

    def put_outbox(self, partition: int, seq: int, payload: bytes) -> None:
        self._put("outbox", (partition, seq), payload)

    def delete_outbox(self, partition: int, seq: int) -> None:
        self._del("outbox", (partition, seq))

    def list_outbox(self, partition: int) -> list[tuple[int, bytes]]:
        return [(int(k[1]), v) for k, v in self._scan("outbox", (partition,))]

    def get_fsm(self, partition: int, name: str) -> int | None:
        raw = self._get("fsm", (partition, name))
        return None if raw is None else int(raw)

    def put_fsm(self, partition: int, name: str, value: int) -> None:
        self._put("fsm", (partition, name), str(value).encode())

    # ------------------------------------------------------------------ schema

    def put_deployment(self, deployment_id: str, doc: bytes) -> None:
        self._put("deployments", (deployment_id,), doc)

    def delete_deployment(self, deployment_id: str) -> None:
        self._del("deployments", (deployment_id,))

    def all_deployments(self) -> list[tuple[str, bytes]]:
        return [(str(k[0]), v) for k, v in self._scan("deployments", ())]

    def put_service(self, name: str, doc: bytes) -> None:
        self._put("services", (name,), doc)

    def delete_service(self, name: str) -> None:
        self._del("services", (name,))

    def all_services(self) -> list[tuple[str, bytes]]:
        return [(str(k[0]), v) for k, v in self._scan("services", ())]
