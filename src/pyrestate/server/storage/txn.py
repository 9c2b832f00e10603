"""The buffered transaction shared by every backend: typed table families over a key/value reader.

Writes are kept in an ordered log (what the backend replays at commit) and in an overlay (so the
transaction reads its own writes). Backends only provide `KVReader` and a way to apply the write log.

Invocation statuses, read and written by every command, stay decoded objects inside the transaction: the
log holds the newest object per status and encodes it once, at commit. A backend may also hand in a
`StatusCache` of committed statuses, which it updates after each successful commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyrestate.server.storage.api import Key, KVReader, WriteOp
from pyrestate.server.storage.records import (
    InvocationStatus,
    JournalEntry,
    Promise,
    Timer,
    status_from_json,
    status_to_json,
)

_STATUS = "invocation_status"


def _has_prefix(key: Key, prefix: Key) -> bool:
    return key[: len(prefix)] == prefix


class StatusCache:
    """Committed invocation statuses (None: known absent), bounded, oldest-written evicted first. Only
    the storage backend writes it, after the commit that made a change durable."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._items: dict[str, InvocationStatus | None] = {}

    def get(self, invocation_id: str) -> tuple[bool, InvocationStatus | None]:
        items = self._items
        if invocation_id in items:
            return True, items[invocation_id]
        return False, None

    def remember(self, invocation_id: str, status: InvocationStatus | None) -> None:
        """A value read from committed storage (kept unless a commit already recorded a newer one)."""
        if invocation_id not in self._items:
            self._set(invocation_id, status)

    def committed(self, changes: Mapping[str, InvocationStatus | None]) -> None:
        for iid, st in changes.items():
            self._items.pop(iid, None)
            self._set(iid, st)

    def _set(self, invocation_id: str, status: InvocationStatus | None) -> None:
        items = self._items
        items[invocation_id] = status
        if len(items) > self._capacity:
            for _ in range(len(items) - self._capacity):
                del items[next(iter(items))]

    def clear(self) -> None:
        self._items.clear()


class BufferedTransaction:
    def __init__(self, reader: KVReader, cache: StatusCache | None = None) -> None:
        self._reader = reader
        self._cache = cache
        # values are bytes, except invocation status puts, which hold the object until `writes`
        self._log: list[tuple[str, str, Key, Any]] = []
        self._overlay: dict[str, dict[Key, bytes | None]] = {}
        self._deleted_prefixes: dict[str, list[Key]] = {}
        self._statuses: dict[str, InvocationStatus | None] = {}
        self._status_pos: dict[str, int] = {}  # log index of a status' latest put
        # Undo records for savepoints: (kind, *data); see rollback_to.
        self._undo: list[tuple[Any, ...]] = []

    # ------------------------------------------------------------------ generic layer

    @property
    def writes(self) -> Sequence[WriteOp]:
        return [
            (op, t, k, status_to_json(v) if isinstance(v, InvocationStatus) else v)
            for op, t, k, v in self._log
        ]

    @property
    def status_changes(self) -> Mapping[str, InvocationStatus | None]:
        """The statuses this transaction writes (None: deleted), for the backend's cache."""
        return self._statuses

    def savepoint(self) -> tuple[int, int]:
        return len(self._log), len(self._undo)

    def rollback_to(self, savepoint: tuple[int, int]) -> None:
        n, u = savepoint
        del self._log[n:]
        undo = self._undo
        while len(undo) > u:
            rec = undo.pop()
            kind = rec[0]
            if kind == "ov":
                _, table, key, had, old = rec
                over = self._overlay[table]
                if had:
                    over[key] = old
                else:
                    over.pop(key, None)
            elif kind == "pfx":
                _, table, removed = rec
                self._deleted_prefixes[table].pop()
                self._overlay[table].update(removed)
            elif kind == "st":
                _, iid, had, old, had_pos, old_pos = rec
                if had:
                    self._statuses[iid] = old
                else:
                    self._statuses.pop(iid, None)
                if had_pos:
                    self._status_pos[iid] = old_pos
                else:
                    self._status_pos.pop(iid, None)
            elif kind == "log":
                _, idx, old_entry = rec
                if idx < len(self._log):
                    self._log[idx] = old_entry

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

    def _set_overlay(self, table: str, key: Key, value: bytes | None) -> None:
        over = self._overlay.get(table)
        if over is None:
            over = self._overlay[table] = {}
        had = key in over
        self._undo.append(("ov", table, key, had, over.get(key)))
        over[key] = value

    def _put(self, table: str, key: Key, value: bytes) -> None:
        self._set_overlay(table, key, value)
        self._log.append(("put", table, key, value))

    def _del(self, table: str, key: Key) -> None:
        self._set_overlay(table, key, None)
        self._log.append(("del", table, key, None))

    def _del_prefix(self, table: str, prefix: Key) -> None:
        over = self._overlay.setdefault(table, {})
        removed = {k: over.pop(k) for k in [k for k in over if _has_prefix(k, prefix)]}
        self._deleted_prefixes.setdefault(table, []).append(prefix)
        self._undo.append(("pfx", table, removed))
        self._log.append(("delprefix", table, prefix, None))

    def _set_status(self, iid: str, st: InvocationStatus | None, pos: int | None) -> None:
        statuses, positions = self._statuses, self._status_pos
        self._undo.append(
            ("st", iid, iid in statuses, statuses.get(iid), iid in positions, positions.get(iid))
        )
        statuses[iid] = st
        if pos is None:
            positions.pop(iid, None)
        else:
            positions[iid] = pos

    # ------------------------------------------------------------------ invocation status

    def get_invocation_status(self, invocation_id: str) -> InvocationStatus | None:
        statuses = self._statuses
        if invocation_id in statuses:
            return statuses[invocation_id]
        cache = self._cache
        if cache is not None:
            hit, st = cache.get(invocation_id)
            if hit:
                return st
        raw = self._reader.get(_STATUS, (invocation_id,))
        st = None if raw is None else status_from_json(raw)
        if cache is not None:
            cache.remember(invocation_id, st)
        return st

    def put_invocation_status(self, status: InvocationStatus) -> None:
        iid = status.invocation_id
        log = self._log
        pos = self._status_pos.get(iid)
        if pos is not None and pos < len(log):
            # Only the newest version of a status reaches the database: replace it in the log.
            old = log[pos]
            self._undo.append(("log", pos, old))
            log[pos] = ("put", _STATUS, (iid,), status)
        else:
            pos = len(log)
            log.append(("put", _STATUS, (iid,), status))
        self._set_status(iid, status, pos)

    def delete_invocation_status(self, invocation_id: str) -> None:
        self._log.append(("del", _STATUS, (invocation_id,), None))
        self._set_status(invocation_id, None, None)

    def all_invocation_statuses(self) -> list[InvocationStatus]:
        committed = [status_from_json(v) for _, v in self._reader.scan(_STATUS, ())]
        rows: dict[str, InvocationStatus | None] = {s.invocation_id: s for s in committed}
        rows.update(self._statuses)
        return [rows[k] for k in sorted(rows) if rows[k] is not None]  # type: ignore[misc]

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

    def has_timer(self, timer: Timer) -> bool:
        """This exact timer is stored (a point read, not a scan: the table holds every retention timer)."""
        raw = self._get("timers", (timer.fire_at, timer.timer_id))
        return raw is not None and Timer.from_json(raw) == timer

    def timers_between(self, after_ms: int, until_ms: int, limit: int) -> list[Timer]:
        # Committed rows only: the timer service reads ahead from a fresh reader, never inside a write.
        if self._overlay.get("timers") or self._deleted_prefixes.get("timers"):
            raise RuntimeError("timers_between reads committed timers only: not after writing timers")
        return [Timer.from_json(v) for _, v in self._reader.scan_between("timers", after_ms, until_ms, limit)]

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
