"""Tables, columns and Arrow types of Restate 1.7's SQL introspection, and the `sys_invocation` view.

Columns are written in the notation DataFusion's `information_schema.columns.data_type` uses, so the
declared schema can be compared against what the official server reports. A trailing `!` marks a column
that is not nullable.
"""

from __future__ import annotations

import re
from functools import cache

import pyarrow as pa

_TABLE_COLUMNS: dict[str, str] = {
    "state": (
        "partition_key:UInt64, scope:LargeUtf8, service_name:LargeUtf8, "
        "service_key:LargeUtf8, key:LargeUtf8, "
        "key_length:UInt64, value_utf8:LargeUtf8, value:LargeBinary, value_length:UInt64"
    ),
    "sys_deployment": (
        "id:LargeUtf8, ty:LargeUtf8, endpoint:LargeUtf8, created_at:Timestamp(ms), "
        "min_service_protocol_version:UInt32, max_service_protocol_version:UInt32, services:List(LargeUtf8)"
    ),
    "sys_inbox": (
        "partition_key:UInt64, service_name:LargeUtf8, service_key:LargeUtf8, id:LargeUtf8, "
        "sequence_number:UInt64, created_at:Timestamp(ms)"
    ),
    "sys_invocation_state": (
        "partition_key:UInt64, id:LargeUtf8, in_flight:Boolean, retry_count:UInt64, "
        "last_start_at:Timestamp(ms), "
        "last_attempt_deployment_id:LargeUtf8, last_attempt_server:LargeUtf8, next_retry_at:Timestamp(ms), "
        "last_failure:LargeUtf8, last_failure_error_code:LargeUtf8, "
        "last_failure_related_command_index:UInt64, "
        "last_failure_related_command_name:LargeUtf8, last_failure_related_command_type:LargeUtf8, "
        "last_failure_related_entry_index:UInt64, last_failure_related_entry_name:LargeUtf8, "
        "last_failure_related_entry_type:LargeUtf8, last_awaiting_on_future_json:LargeUtf8"
    ),
    "sys_invocation_status": (
        "partition_key:UInt64, id:LargeUtf8, vqueue_id:LargeUtf8, status:LargeUtf8, "
        "completion_result:LargeUtf8, "
        "completion_failure:LargeUtf8, target:LargeUtf8, target_service_name:LargeUtf8, "
        "target_service_key:LargeUtf8, target_handler_name:LargeUtf8, target_service_ty:LargeUtf8, "
        "scope:LargeUtf8, limit_key:LargeUtf8, idempotency_key:LargeUtf8, invoked_by:LargeUtf8, "
        "invoked_by_id:LargeUtf8, invoked_by_subscription_id:LargeUtf8, invoked_by_service_name:LargeUtf8, "
        "invoked_by_target:LargeUtf8, restarted_from:LargeUtf8, pinned_deployment_id:LargeUtf8, "
        "pinned_service_protocol_version:UInt32, trace_id:LargeUtf8, journal_size:UInt32, "
        "journal_commands_size:UInt32, created_at:Timestamp(ms), created_using_restate_version:LargeUtf8, "
        "modified_at:Timestamp(ms), inboxed_at:Timestamp(ms), scheduled_at:Timestamp(ms), "
        "scheduled_start_at:Timestamp(ms), running_at:Timestamp(ms), completed_at:Timestamp(ms), "
        "completion_retention:Duration(ms), journal_retention:Duration(ms), "
        "suspended_waiting_for_completions:List(UInt32), suspended_waiting_for_signals:List(UInt32), "
        "suspended_waiting_future_json:LargeUtf8"
    ),
    "sys_journal": (
        "partition_key:UInt64, id:LargeUtf8, index:UInt32, entry_type:LargeUtf8, name:LargeUtf8, "
        "completed:Boolean, invoked_id:LargeUtf8, invoked_target:LargeUtf8, sleep_wakeup_at:Timestamp(ms), "
        "promise_name:LargeUtf8, raw:LargeBinary, raw_length:UInt64, version:UInt32, entry_json:LargeUtf8, "
        "entry_lite_json:LargeUtf8, appended_at:Timestamp(ms)"
    ),
    "sys_journal_events": (
        "partition_key:UInt64, id:LargeUtf8, after_journal_entry_index:UInt32, appended_at:Timestamp(ms), "
        "event_type:LargeUtf8, event_json:LargeUtf8"
    ),
    "sys_keyed_service_status": (
        "partition_key:UInt64, service_name:LargeUtf8, service_key:LargeUtf8, invocation_id:LargeUtf8"
    ),
    "sys_locks": (
        "partition_key:UInt64, scope:LargeUtf8, lock_name:LargeUtf8, acquired_at:Timestamp(ms), "
        "acquired_by:LargeUtf8"
    ),
    "sys_promise": (
        "partition_key:UInt64, scope:LargeUtf8, service_name:LargeUtf8, "
        "service_key:LargeUtf8, key:LargeUtf8, "
        "completed:Boolean, completion_success_value:LargeBinary, completion_success_value_utf8:LargeUtf8, "
        "completion_failure:LargeUtf8"
    ),
    "sys_rules": (
        "pattern:LargeUtf8, concurrency:UInt32, description:LargeUtf8, disabled:Boolean, version:UInt32, "
        "last_modified:Timestamp(ms)"
    ),
    "sys_scheduler": (
        "partition_key:UInt64, id:LargeUtf8, num_inbox:UInt64, status:LargeUtf8, head_entry_id:LargeUtf8, "
        "scheduled_at:Timestamp(ms), blocked_on:LargeUtf8, blocked_on_json:LargeUtf8, "
        "invoker_concurrency_block_duration:Duration(ms), throttling_rules_block_duration:Duration(ms), "
        "invoker_throttling_block_duration:Duration(ms), invoker_memory_block_duration:Duration(ms), "
        "concurrency_rules_block_duration:Duration(ms), lock_block_duration:Duration(ms), "
        "deployment_concurrency_block_duration:Duration(ms)"
    ),
    "sys_service": "name:LargeUtf8, revision:UInt64, public:Boolean, ty:LargeUtf8, deployment_id:LargeUtf8",
    "sys_user_limits": (
        "partition_key:UInt64, scope:LargeUtf8, l1:LargeUtf8, l2:LargeUtf8, level:LargeUtf8, usage:UInt32, "
        "concurrency_limit:UInt32, rule_pattern:LargeUtf8, available:UInt32, num_waiters:UInt64"
    ),
    "sys_vqueue_entry_status": (
        "partition_key:UInt64, entry_id:LargeUtf8, vqueue_id:LargeUtf8, stage:LargeUtf8, status:LargeUtf8, "
        "has_lock:Boolean, next_at:Timestamp(ms), sequence_number:UInt64, entry_kind:LargeUtf8, "
        "created_at:Timestamp(ms), transitioned_at:Timestamp(ms), num_attempts:UInt32, num_errors:UInt32, "
        "num_pauses:UInt32, num_suspensions:UInt32, num_yields:UInt32, first_attempt_at:Timestamp(ms), "
        "latest_attempt_at:Timestamp(ms), first_runnable_at:Timestamp(ms), deployment:LargeUtf8, "
        "needed_memory:UInt64, retry_attempts:UInt32, retry_count_since_last_stored_command:UInt32, "
        "latest_attempt_blocked_on_invoker_concurrency:Duration(ms), "
        "latest_attempt_blocked_on_throttling_rules:Duration(ms), "
        "latest_attempt_blocked_on_invoker_throttling:Duration(ms), "
        "latest_attempt_blocked_on_invoker_memory:Duration(ms), "
        "latest_attempt_blocked_on_concurrency_rules:Duration(ms), "
        "latest_attempt_blocked_on_lock:Duration(ms), "
        "latest_attempt_blocked_on_deployment_concurrency:Duration(ms), "
        "total_blocked_on_invoker_concurrency:Duration(ms), total_blocked_on_throttling_rules:Duration(ms), "
        "total_blocked_on_invoker_throttling:Duration(ms), total_blocked_on_invoker_memory:Duration(ms), "
        "total_blocked_on_concurrency_rules:Duration(ms), total_blocked_on_lock:Duration(ms), "
        "total_blocked_on_deployment_concurrency:Duration(ms)"
    ),
    "sys_vqueue_meta": (
        "partition_key:UInt64, id:LargeUtf8, is_active:Boolean, queue_is_paused:Boolean, "
        "service_name:LargeUtf8, "
        "scope:LargeUtf8, limit_key:LargeUtf8, lock_name:LargeUtf8, created_at:Timestamp(ms), "
        "last_enqueued_at:Timestamp(ms), last_start_at:Timestamp(ms), last_attempt_at:Timestamp(ms), "
        "last_finish_at:Timestamp(ms), avg_queue_duration:Duration(ms), avg_inbox_duration:Duration(ms), "
        "avg_run_duration:Duration(ms), avg_suspension_duration:Duration(ms), "
        "avg_end_to_end_duration:Duration(ms), avg_blocked_on_concurrency_rules:Duration(ms), "
        "avg_blocked_on_invoker_concurrency:Duration(ms), avg_blocked_on_invoker_throttling:Duration(ms), "
        "avg_blocked_on_lock:Duration(ms), num_inbox:UInt64, num_running:UInt64, num_suspended:UInt64, "
        "num_paused:UInt64, num_finished:UInt64"
    ),
    "sys_vqueues": (
        "partition_key:UInt64, id:LargeUtf8, stage:LargeUtf8, status:LargeUtf8, has_lock:Boolean, "
        "run_at:Timestamp(ms), sequence_number:UInt64, entry_id:LargeUtf8, entry_kind:LargeUtf8, "
        "created_at:Timestamp(ms), transitioned_at:Timestamp(ms), num_attempts:UInt32, num_errors:UInt32, "
        "num_pauses:UInt32, num_suspensions:UInt32, num_yields:UInt32, first_attempt_at:Timestamp(ms), "
        "latest_attempt_at:Timestamp(ms), first_runnable_at:Timestamp(ms), deployment:LargeUtf8"
    ),
    # Not listed by Restate 1.7.12 any more, but documented for earlier versions and handy to operators.
    "sys_idempotency": (
        "partition_key:UInt64, service_name:LargeUtf8, service_key:LargeUtf8, service_handler:LargeUtf8, "
        "idempotency_key:LargeUtf8, invocation_id:LargeUtf8"
    ),
}

# The view over invocation status (always there) and invoker state (only for invocations the invoker
# knows about), with the status vocabulary operators see: `inboxed` is shown as `pending`, and an
# invoked invocation is `running`, `backing-off` (failed attempt, waiting to retry) or `ready`.
SYS_INVOCATION_VIEW = """CREATE VIEW sys_invocation AS SELECT
    ss.id, ss.vqueue_id, ss.target, ss.target_service_name, ss.target_service_key, ss.target_handler_name,
    ss.target_service_ty, ss.scope, ss.limit_key, ss.idempotency_key, ss.invoked_by,
    ss.invoked_by_service_name, ss.invoked_by_id, ss.invoked_by_subscription_id, ss.invoked_by_target,
    ss.restarted_from, ss.pinned_deployment_id, ss.pinned_service_protocol_version, ss.trace_id,
    ss.journal_size, ss.journal_commands_size, ss.created_at, ss.created_using_restate_version,
    ss.modified_at, ss.inboxed_at, ss.scheduled_at, ss.scheduled_start_at, ss.running_at, ss.completed_at,
    ss.completion_retention, ss.journal_retention, ss.suspended_waiting_for_completions,
    ss.suspended_waiting_for_signals, ss.suspended_waiting_future_json,
    sis.retry_count, sis.last_start_at, sis.next_retry_at, sis.last_attempt_deployment_id,
    sis.last_attempt_server, sis.last_failure, sis.last_failure_error_code,
    sis.last_failure_related_entry_index, sis.last_failure_related_entry_name,
    sis.last_failure_related_entry_type, sis.last_failure_related_command_index,
    sis.last_failure_related_command_name, sis.last_failure_related_command_type,
    sis.last_awaiting_on_future_json,
    arrow_cast(CASE
        WHEN ss.status = 'inboxed' THEN 'pending'
        WHEN ss.status = 'pending' AND ss.running_at IS NULL THEN 'pending'
        WHEN ss.status = 'pending' THEN 'ready'
        WHEN ss.status = 'scheduled' THEN 'scheduled'
        WHEN ss.status = 'completed' THEN 'completed'
        WHEN ss.status = 'suspended' THEN 'suspended'
        WHEN ss.status = 'paused' THEN 'paused'
        WHEN sis.in_flight THEN 'running'
        WHEN ss.status = 'invoked' AND sis.retry_count > 0 THEN 'backing-off'
        ELSE 'ready'
    END, 'LargeUtf8') AS status,
    ss.completion_result, ss.completion_failure
FROM sys_invocation_state sis
RIGHT JOIN sys_invocation_status ss ON ss.id = sis.id"""

# Tables each user-visible name reads (the view reads two).
TABLE_SOURCES: dict[str, tuple[str, ...]] = {name: (name,) for name in _TABLE_COLUMNS}
TABLE_SOURCES["sys_invocation"] = ("sys_invocation_status", "sys_invocation_state")

_UTC = "+00:00"
_SIMPLE: dict[str, pa.DataType] = {
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Int64": pa.int64(),
    "Boolean": pa.bool_(),
    "LargeUtf8": pa.large_utf8(),
    "LargeBinary": pa.large_binary(),
    "Timestamp(ms)": pa.timestamp("ms", tz=_UTC),
    "Duration(ms)": pa.duration("ms"),
}
_LIST = re.compile(r"List\((\w+)\)")


def _arrow_type(spec: str) -> pa.DataType:
    if spec in _SIMPLE:
        return _SIMPLE[spec]
    m = _LIST.fullmatch(spec)
    if m is None:
        raise ValueError(f"unknown column type {spec!r}")
    return pa.list_(_arrow_type(m.group(1)))


@cache
def table_schema(name: str) -> pa.Schema:
    fields = []
    for col in _TABLE_COLUMNS[name].split(","):
        col_name, _, ty = col.strip().partition(":")
        nullable = not ty.endswith("!")
        fields.append(pa.field(col_name, _arrow_type(ty.rstrip("!")), nullable=nullable))
    return pa.schema(fields)


def table_names() -> list[str]:
    return sorted(_TABLE_COLUMNS)
