"""Storage records to the rows of Restate's introspection tables. Pure code over a `QuerySnapshot`.

Only the tables a query names are read; every other table is registered empty (so `information_schema`
still lists it with its columns).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

import pyrestate
from pyrestate.protocol.ids import InvocationId, partition_key_for_key
from pyrestate.server.core_api import DeploymentRecord, Failure, QuerySnapshot, ServiceSchema, Success
from pyrestate.server.deployments import redact_uri
from pyrestate.server.flow_limits import RuleBook, counter_usage
from pyrestate.server.query.journal import journal_rows
from pyrestate.server.query.schema import table_schema
from pyrestate.server.storage.records import InvocationStatus, JournalEntry, Promise, Status, status_from_json
from pyrestate.server.storage.schema_codec import deployment_from_json, service_from_json

Row = dict[str, Any]

# Reported as `created_using_restate_version`: the version this server announces on `/version`.
_SERVER_VERSION = getattr(pyrestate, "__version__", "0.0.0")


def _partition_key(invocation_id: str) -> int | None:
    try:
        return InvocationId.parse(invocation_id).partition_key
    except ValueError:
        return None


def _utf8(b: bytes) -> str | None:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _failure_text(f: Failure) -> str:
    return f"[{f.code}] {f.message}"


# Decoding stored statuses is most of a query's cost on a big invocation table, and between two queries
# (the official CLI sends three for one `invocations list`) few of them change: the stored bytes are the
# key, so a changed status simply misses. Statuses are never mutated (`with_` copies).
_DECODED_STATUSES: dict[bytes, InvocationStatus] = {}
_DECODED_STATUSES_MAX = 20_000
_STATUS_ROWS: dict[bytes, Row] = {}  # rows of sys_invocation_status by stored bytes (never mutated)


class _Loaded:
    """Decoded storage tables, each read once per query."""

    def __init__(self, snap: QuerySnapshot) -> None:
        self.snap = snap
        self._statuses: dict[str, InvocationStatus] | None = None
        self.stored: dict[str, bytes] = {}  # invocation id -> its stored status bytes (the memo key)
        self._deployments: list[DeploymentRecord] | None = None

    def statuses(self) -> dict[str, InvocationStatus]:
        if self._statuses is None:
            self._statuses = {}
            memo = _DECODED_STATUSES
            if len(memo) > _DECODED_STATUSES_MAX:
                memo.clear()
            for _, v in self.snap.scan("invocation_status"):
                raw = bytes(v)
                st = memo.get(raw)
                if st is None:
                    st = memo[raw] = status_from_json(raw)
                self._statuses[st.invocation_id] = st
                self.stored[st.invocation_id] = raw
        return self._statuses

    def deployments(self) -> list[DeploymentRecord]:
        if self._deployments is None:
            self._deployments = [deployment_from_json(v) for _, v in self.snap.scan("deployments")]
        return self._deployments

    def services(self) -> list[ServiceSchema]:
        return [service_from_json(v) for _, v in self.snap.scan("services")]


# ------------------------------------------------------------------------------------------ invocations


def _waiting_future_json(st: InvocationStatus) -> str | None:
    w = st.waiting
    if w is None:
        return None
    singles: list[dict[str, Any]] = [{"Single": {"CompletionId": c}} for c in w.completions]
    singles += [{"Single": {"SignalIndex": s}} for s in w.signals]
    singles += [{"Single": {"SignalName": n}} for n in w.named_signals]
    return json.dumps({"Unknown": singles}, separators=(",", ":"))


def _status_row(st: InvocationStatus, statuses: dict[str, InvocationStatus]) -> Row:
    t = st.target
    row: Row = {
        "partition_key": _partition_key(st.invocation_id),
        "id": st.invocation_id,
        "status": st.status.value,
        "target": t.display(),
        "target_service_name": t.service,
        "target_service_key": t.key,
        "target_handler_name": t.handler,
        "target_service_ty": t.service_ty.value.lower(),  # virtual_object
        "scope": t.scope,
        "limit_key": t.limit_key,
        "idempotency_key": st.idempotency_key,
        "invoked_by": st.invoked_by,
        "created_at": st.created_at,
        "modified_at": st.modified_at,
        "created_using_restate_version": _SERVER_VERSION,
        "scheduled_start_at": st.execution_time,
        "running_at": st.running_at,
        "completed_at": st.completed_at,
        "completion_retention": st.completion_retention_ms,
    }
    if st.invoked_by == "subscription":
        row["invoked_by_subscription_id"] = st.invoked_by_id
    if st.invoked_by == "service" and st.invoked_by_id is not None:
        row["invoked_by_id"] = st.invoked_by_id
        caller = statuses.get(st.invoked_by_id)
        if caller is not None:
            row["invoked_by_service_name"] = caller.target.service
            row["invoked_by_target"] = caller.target.display()
    elif st.invoked_by == "restart_as_new":
        row["restarted_from"] = st.invoked_by_id
    if st.execution_time is not None:
        row["scheduled_at"] = st.created_at  # delayed sends are scheduled when they are created
    if st.status is Status.INBOXED or (st.status is Status.PENDING and st.running_at is None):
        row["inboxed_at"] = st.modified_at  # nothing else touches an inboxed record
    never_ran = st.status is Status.PENDING and st.running_at is None
    if st.status not in (Status.SCHEDULED, Status.INBOXED) and not never_ran:
        row["pinned_deployment_id"] = st.deployment_id
        row["pinned_service_protocol_version"] = st.protocol_version
        row["journal_size"] = st.journal_length
        row["journal_commands_size"] = st.command_count
    if st.status is Status.SUSPENDED and st.waiting is not None:
        row["suspended_waiting_for_completions"] = list(st.waiting.completions)
        row["suspended_waiting_for_signals"] = list(st.waiting.signals)
        row["suspended_waiting_future_json"] = _waiting_future_json(st)
    if st.status is Status.COMPLETED:
        match st.output:
            case Success():
                row["completion_result"] = "success"
            case Failure() as f:
                row["completion_result"] = "failure"
                row["completion_failure"] = _failure_text(f)
    return row


def _in_flight(st: InvocationStatus, snap: QuerySnapshot) -> bool:
    if st.status is not Status.INVOKED:
        return False
    if snap.in_flight is not None:
        return st.invocation_id in snap.in_flight
    # Without the invoker's view: an invoked invocation runs unless it waits for a retry.
    return st.next_retry_at is None or st.next_retry_at <= snap.now_ms


def _state_row(st: InvocationStatus, snap: QuerySnapshot, servers: dict[str, str]) -> Row:
    in_flight = _in_flight(st, snap)
    row: Row = {
        "partition_key": _partition_key(st.invocation_id),
        "id": st.invocation_id,
        "in_flight": in_flight,
        "retry_count": st.retry_count,
        "last_attempt_deployment_id": st.deployment_id,
        "last_failure": st.last_failure,
    }
    if st.deployment_id is not None:
        row["last_attempt_server"] = servers.get(st.deployment_id)
    if not in_flight and st.next_retry_at is not None and st.next_retry_at > snap.now_ms:
        row["next_retry_at"] = st.next_retry_at
    return row


def _sys_invocation_status(data: _Loaded) -> list[Row]:
    statuses = data.statuses()
    memo = _STATUS_ROWS
    if len(memo) > _DECODED_STATUSES_MAX:
        memo.clear()
    rows = []
    for iid, st in statuses.items():
        # A row depends on its status and, for a call, on the caller's target, which never changes.
        raw = data.stored[iid]
        row = memo.get(raw)
        if row is None:
            row = memo[raw] = _status_row(st, statuses)
        rows.append(row)
    return rows


def _sys_invocation_state(data: _Loaded) -> list[Row]:
    servers = {d.id: d.sdk_version for d in data.deployments() if d.sdk_version}
    # The invoker knows only invocations it runs or retries (paused ones keep their last failure).
    return [
        _state_row(st, data.snap, servers)
        for st in data.statuses().values()
        if st.status in (Status.INVOKED, Status.PAUSED)
    ]


def _sys_idempotency(data: _Loaded) -> list[Row]:
    return [
        {
            "partition_key": _partition_key(st.invocation_id),
            "service_name": st.target.service,
            "service_key": st.target.key,
            "service_handler": st.target.handler,
            "idempotency_key": st.idempotency_key,
            "invocation_id": st.invocation_id,
        }
        for st in data.statuses().values()
        if st.idempotency_key is not None
    ]


# ------------------------------------------------------------------------------------------ journal


def _sys_journal(data: _Loaded) -> list[Row]:
    per_invocation: dict[str, list[tuple[int, int, bytes]]] = {}
    appended_at: dict[tuple[str, int], int | None] = {}
    for key, value in data.snap.scan("journal"):
        entry = JournalEntry.decode(value)
        iid, index = str(key[0]), int(key[1])
        per_invocation.setdefault(iid, []).append((index, entry.ty, entry.raw))
        appended_at[iid, index] = entry.appended_at
    rows: list[Row] = []
    for iid, entries in per_invocation.items():
        pk = _partition_key(iid)
        for jr in journal_rows(entries):
            rows.append(
                {
                    "partition_key": pk,
                    "id": iid,
                    "index": jr.index,
                    "entry_type": jr.entry_type,
                    "name": jr.name,
                    "completed": jr.completed,
                    "invoked_id": jr.invoked_id,
                    "invoked_target": jr.invoked_target,
                    "sleep_wakeup_at": jr.sleep_wakeup_at,
                    "promise_name": jr.promise_name,
                    "raw": jr.raw,
                    "raw_length": len(jr.raw),
                    "version": 2,
                    "entry_json": jr.entry_json,
                    "entry_lite_json": jr.entry_lite_json,
                    "appended_at": appended_at[iid, jr.index],
                }
            )
    return rows


# ------------------------------------------------------------------------------------------ keyed data


def _state(data: _Loaded) -> list[Row]:
    rows: list[Row] = []
    for (service, key, name), value in data.snap.scan("state"):
        name_b = name if isinstance(name, bytes) else str(name).encode()
        rows.append(
            {
                "partition_key": partition_key_for_key(str(key)),
                "service_name": service,
                "service_key": key,
                "key": _utf8(name_b) or name_b.hex(),
                "key_length": len(name_b),
                "value_utf8": _utf8(value),
                "value": value,
                "value_length": len(value),
            }
        )
    return rows


def _sys_inbox(data: _Loaded) -> list[Row]:
    statuses = data.statuses()
    rows: list[Row] = []
    for (service, key, seq), value in data.snap.scan("inbox"):
        iid = value.decode()
        st = statuses.get(iid)
        rows.append(
            {
                "partition_key": partition_key_for_key(str(key)),
                "service_name": service,
                "service_key": key,
                "id": iid,
                "sequence_number": seq,
                "created_at": None if st is None else st.created_at,
            }
        )
    return rows


def _sys_keyed_service_status(data: _Loaded) -> list[Row]:
    return [
        {
            "partition_key": partition_key_for_key(str(key)),
            "service_name": service,
            "service_key": key,
            "invocation_id": value.decode(),
        }
        for (service, key), value in data.snap.scan("locks")
    ]


def _sys_locks(data: _Loaded) -> list[Row]:
    return [
        {
            "partition_key": partition_key_for_key(str(key)),
            "lock_name": f"{service!s}/{key!s}",
            "acquired_by": value.decode(),
        }
        for (service, key), value in data.snap.scan("locks")
    ]


def _sys_promise(data: _Loaded) -> list[Row]:
    rows: list[Row] = []
    for (service, key, name), value in data.snap.scan("promises"):
        p = Promise.from_json(value)
        row: Row = {
            "partition_key": partition_key_for_key(str(key)),
            "service_name": service,
            "service_key": key,
            "key": name,
            "completed": p.completed,
        }
        match p.result:
            case Success(value=v):
                row["completion_success_value"] = v
                row["completion_success_value_utf8"] = _utf8(v)
            case Failure() as f:
                row["completion_failure"] = _failure_text(f)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------ schema


def _sys_service(data: _Loaded) -> list[Row]:
    return [
        {
            "name": s.name,
            "revision": s.revision,
            "public": s.public,
            "ty": s.ty.value.lower(),
            "deployment_id": s.deployment_id,
        }
        for s in data.services()
    ]


def _sys_deployment(data: _Loaded) -> list[Row]:
    return [
        {
            "id": d.id,
            "ty": "http",
            "endpoint": redact_uri(d.uri),
            "created_at": d.created_at_ms,
            "min_service_protocol_version": d.min_protocol_version,
            "max_service_protocol_version": d.max_protocol_version,
            "services": [s.name for s in d.services],
        }
        for d in data.deployments()
    ]


def _sys_rules(data: _Loaded) -> list[Row]:
    book = RuleBook.from_bytes(next((v for _, v in data.snap.scan("limit_rules")), None))
    return [
        {
            "pattern": r.pattern,
            "concurrency": r.concurrency,
            "description": r.description,
            "disabled": r.disabled,
            "version": r.version,
            "last_modified": r.last_modified_ms,
        }
        for r in book.sorted_rules()
    ]


def _sys_user_limits(data: _Loaded) -> list[Row]:
    running: dict[str, list[str | None]] = {}
    for key, value in data.snap.scan("limit_slots"):
        running.setdefault(str(key[0]), []).append(bytes(value).decode() or None)
    waiting: dict[str, list[str | None]] = {}
    statuses = data.statuses()
    for key, value in data.snap.scan("limit_queue"):
        st = statuses.get(bytes(value).decode())
        if st is not None and st.status is Status.PENDING:
            waiting.setdefault(str(key[0]), []).append(st.target.limit_key)
    if not running and not waiting:
        return []
    book = RuleBook.from_bytes(next((v for _, v in data.snap.scan("limit_rules")), None))
    rows: list[Row] = []
    for scope in sorted(running.keys() | waiting.keys()):
        for c in counter_usage(book, scope, running.get(scope, ()), waiting.get(scope, ())):
            rows.append(
                {
                    "partition_key": partition_key_for_key(scope),
                    "scope": scope,
                    "l1": c.counter[1] if len(c.counter) > 1 else None,
                    "l2": c.counter[2] if len(c.counter) > 2 else None,
                    "level": c.level,
                    "usage": c.usage,
                    "concurrency_limit": c.limit,
                    "rule_pattern": c.rule_pattern,
                    "available": max(0, c.limit - c.usage),
                    "num_waiters": c.waiters,
                }
            )
    return rows


BUILDERS: dict[str, Callable[[_Loaded], list[Row]]] = {
    "sys_user_limits": _sys_user_limits,
    "sys_rules": _sys_rules,
    "sys_invocation_status": _sys_invocation_status,
    "sys_invocation_state": _sys_invocation_state,
    "sys_idempotency": _sys_idempotency,
    "sys_journal": _sys_journal,
    "state": _state,
    "sys_inbox": _sys_inbox,
    "sys_keyed_service_status": _sys_keyed_service_status,
    "sys_locks": _sys_locks,
    "sys_promise": _sys_promise,
    "sys_service": _sys_service,
    "sys_deployment": _sys_deployment,
}


# The last sys_invocation_status table and the stored statuses it was built from, in scan order. Tools send
# queries in bursts (the official CLI's `invocations list` sends three) over statuses that did not change in
# between; converting thousands of rows to Arrow is most of such a query's cost.
_LAST_STATUS_TABLE: tuple[list[bytes], pa.Table] | None = None


def _status_table(data: _Loaded) -> pa.Table:
    global _LAST_STATUS_TABLE
    data.statuses()
    stored = list(data.stored.values())
    last = _LAST_STATUS_TABLE
    if last is not None and last[0] == stored:
        return last[1]
    table = pa.Table.from_pylist(_sys_invocation_status(data), schema=table_schema("sys_invocation_status"))
    _LAST_STATUS_TABLE = (stored, table)
    return table


def build_tables(snap: QuerySnapshot, names: Iterable[str]) -> dict[str, pa.Table]:
    """Arrow tables (with the official schemas) for the given table names, from one snapshot."""
    data = _Loaded(snap)
    out: dict[str, pa.Table] = {}
    for name in names:
        if name == "sys_invocation_status":
            out[name] = _status_table(data)
            continue
        builder = BUILDERS.get(name)
        schema = table_schema(name)
        rows = builder(data) if builder is not None else []
        out[name] = pa.Table.from_pylist(rows, schema=schema)
    return out
