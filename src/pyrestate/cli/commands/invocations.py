"""`pyrestate invocations`: list, describe, and cancel/kill/purge/pause/resume invocations."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from pyrestate.cli.admin_client import (
    EXIT_API_ERROR,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    AdminClient,
    CliError,
    seg,
)
from pyrestate.cli.commands.services import STATUS_COLUMNS
from pyrestate.cli.options import (
    F,
    Group,
    admin_command,
    progress_spinner,
)
from pyrestate.cli.render import (
    console,
    entry_value_json,
    err_console,
    print_json,
    sql_str,
    status_text,
    table,
    timeline,
)


@click.group(cls=Group)
def invocations() -> None:
    """List, inspect and control invocations."""


_LIST_COLUMNS = (
    "id, target, status, completion_result, completion_failure, created_at, modified_at, retry_count, "
    "next_retry_at, last_failure, idempotency_key, pinned_deployment_id, invoked_by_target, invoked_by"
)


@admin_command(invocations, "list")
@click.option("--all", "show_all", is_flag=True, help="Include completed invocations.")
@click.option("--service", help="Only invocations of this service.")
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(STATUS_COLUMNS, case_sensitive=False),
    help="Only invocations with this status.",
)
@click.option("--limit", default=100, show_default=True, help="At most this many rows.")
def invocations_list(
    show_all: bool,
    service: str | None,
    status_filter: str | None,
    limit: int,
    admin_url: str,
    as_json: bool,
) -> None:
    """List invocations, newest first (completed ones only with --all)."""
    conds = []
    if not show_all and status_filter is None:
        conds.append("status != 'completed'")
    if status_filter:
        conds.append(f"status = {sql_str(status_filter.lower())}")
    if service:
        conds.append(f"target_service_name = {sql_str(service)}")
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    with AdminClient(admin_url) as client:
        rows = client.query(
            f"SELECT {_LIST_COLUMNS} FROM sys_invocation{where} "
            f"ORDER BY created_at DESC, id LIMIT {int(limit)}"
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        err_console.print("No invocations found." + ("" if show_all else " (use --all to include completed)"))
        return
    console.print(
        table(
            ["ID", "TARGET", "STATUS", "CREATED", "RETRIES", "LAST FAILURE"],
            (
                [
                    r["id"],
                    r.get("target"),
                    status_text(r.get("status"), r.get("completion_result")).plain,
                    r.get("created_at"),
                    r.get("retry_count") or "",
                    _first_line(r.get("completion_failure") or r.get("last_failure")),
                ]
                for r in rows
            ),
        )
    )
    err_console.print(f"{len(rows)} invocation(s).")


def _first_line(text: object) -> str:
    return "" if not text else str(text).splitlines()[0][:120]


@admin_command(invocations, "describe")
@click.argument("invocation_id")
def invocations_describe(invocation_id: str, admin_url: str, as_json: bool) -> None:
    """Show one invocation and its journal as a timeline."""
    _check_invocation_id(invocation_id)
    with AdminClient(admin_url) as client:
        found = client.query(f"SELECT * FROM sys_invocation WHERE id = {sql_str(invocation_id)} LIMIT 1")
        if not found:
            raise CliError(f"The requested invocation '{invocation_id}' does not exist", EXIT_NOT_FOUND)
        journal = client.query(
            "SELECT index, entry_type, name, completed, invoked_id, invoked_target, sleep_wakeup_at, "
            f"promise_name, entry_json, appended_at FROM sys_journal WHERE id = {sql_str(invocation_id)} "
            "ORDER BY index"
        )
    inv = found[0]
    if as_json:
        # `value`: the entry's payload decoded (JSON, else base64), beside restate's byte-array `entry_json`.
        for e in journal:
            value = entry_value_json(e.get("entry_json"))
            if value is not None:
                e["value"] = value
        print_json({"invocation": inv, "journal": journal})
        return
    info = [
        ("ID", inv["id"]),
        ("Target", inv.get("target")),
        ("Status", status_text(inv.get("status"), inv.get("completion_result")).plain),
        ("Created at", inv.get("created_at")),
        ("Modified at", inv.get("modified_at")),
        ("Idempotency key", inv.get("idempotency_key")),
        ("Invoked by", inv.get("invoked_by_target") or inv.get("invoked_by")),
        ("Deployment", inv.get("pinned_deployment_id")),
        ("Retries", inv.get("retry_count")),
        ("Last failure", inv.get("last_failure")),
        ("Completion failure", inv.get("completion_failure")),
    ]
    console.print(table(["", ""], [(k, v) for k, v in info if v not in (None, "", 0)], title="Invocation"))
    console.print(timeline(inv, journal))


_VERB_PAST = {
    "cancel": "Cancel requested for",
    "kill": "Killed",
    "purge": "Purged",
    "pause": "Pause requested for",
    "resume": "Resumed",
}


def _check_invocation_id(text: str) -> None:
    """A malformed id is a usage error (exit 2), told apart from a well-formed one the server does not
    know (exit 4)."""
    from pyrestate.protocol.ids import InvocationId

    try:
        InvocationId.parse(text)
    except ValueError as e:
        raise CliError(f"{e} (ids look like inv_1…; see `pyrestate invocations list`)", EXIT_USAGE) from None


def _invocation_command(
    verb: str,
    ids: tuple[str, ...],
    admin_url: str,
    as_json: bool,
    wait: bool,
    timeout: float,
    deployment: str | None = None,
) -> None:
    results: list[dict[str, Any]] = []
    failures = 0
    exit_code = EXIT_API_ERROR
    for inv_id in ids:
        _check_invocation_id(inv_id)
    with AdminClient(admin_url) as client:
        for inv_id in ids:
            params = {"deployment": deployment} if deployment else None
            try:
                status, _ = client.request("PATCH", f"/v4/invocations/{seg(inv_id)}/{verb}", params=params)
            except CliError as e:
                if e.exit_code == EXIT_UNREACHABLE:
                    raise
                failures += 1
                exit_code = e.exit_code if len(ids) == 1 else EXIT_API_ERROR
                results.append({"id": inv_id, "ok": False, "error": e.message})
                if not as_json:
                    err_console.print(f"[bold red]error:[/] {inv_id}: {e.message}", highlight=False)
                continue
            results.append({"id": inv_id, "ok": True, "http_status": status})
            if not as_json:
                console.print(f"{_VERB_PAST[verb]} {inv_id}", highlight=False)
        if wait:
            pending = [str(r["id"]) for r in results if r["ok"]]
            _wait_completed(client, pending, timeout, as_json, results)
    if as_json:
        print_json(results)
    if failures:
        sys.exit(exit_code)


def _wait_completed(
    client: AdminClient, ids: list[str], timeout: float, quiet: bool, results: list[dict[str, Any]]
) -> None:
    if not ids:
        return
    deadline = time.monotonic() + timeout
    id_list = ", ".join(sql_str(i) for i in ids)
    done: dict[str, dict[str, Any]] = {}
    with progress_spinner(f"Waiting for {len(ids)} invocation(s) to complete…", quiet):
        while True:
            rows = client.query(
                "SELECT id, status, completion_result, completion_failure FROM sys_invocation "
                f"WHERE id IN ({id_list})"
            )
            done = {r["id"]: r for r in rows if r.get("status") == "completed"}
            if len(done) == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    for r in results:
        row = done.get(r["id"])
        if row is not None:
            r["completion_failure"] = row.get("completion_failure")
            if not quiet:
                console.print(
                    f"{r['id']} completed: {row.get('completion_failure') or row.get('completion_result')}",
                    highlight=False,
                )
    if len(done) != len(ids):
        raise CliError(f"{len(ids) - len(done)} invocation(s) did not complete within {timeout:g}s")


def _wait_options(fn: F) -> F:
    fn = click.option("--timeout", default=30.0, show_default=True, help="Seconds --wait waits.")(fn)
    return click.option("--wait", is_flag=True, help="Wait until the invocations have completed.")(fn)


@admin_command(invocations, "cancel")
@click.argument("invocation_ids", nargs=-1, required=True)
@_wait_options
def invocations_cancel(
    invocation_ids: tuple[str, ...], wait: bool, timeout: float, admin_url: str, as_json: bool
) -> None:
    """Cancel invocations: each unwinds through its compensations and fails with 409 cancelled."""
    _invocation_command("cancel", invocation_ids, admin_url, as_json, wait, timeout)


@admin_command(invocations, "kill")
@click.argument("invocation_ids", nargs=-1, required=True)
@_wait_options
def invocations_kill(
    invocation_ids: tuple[str, ...], wait: bool, timeout: float, admin_url: str, as_json: bool
) -> None:
    """Kill invocations immediately, without running compensations."""
    _invocation_command("kill", invocation_ids, admin_url, as_json, wait, timeout)


@admin_command(invocations, "purge")
@click.argument("invocation_ids", nargs=-1, required=True)
def invocations_purge(invocation_ids: tuple[str, ...], admin_url: str, as_json: bool) -> None:
    """Forget completed invocations (result, journal, idempotency entry)."""
    _invocation_command("purge", invocation_ids, admin_url, as_json, False, 0)


@admin_command(invocations, "pause")
@click.argument("invocation_ids", nargs=-1, required=True)
def invocations_pause(invocation_ids: tuple[str, ...], admin_url: str, as_json: bool) -> None:
    """Pause invocations: no further attempts until resumed."""
    _invocation_command("pause", invocation_ids, admin_url, as_json, False, 0)


@admin_command(invocations, "resume")
@click.argument("invocation_ids", nargs=-1, required=True)
@click.option("--deployment", help="Resume on this deployment instead of the pinned one.")
def invocations_resume(
    invocation_ids: tuple[str, ...], deployment: str | None, admin_url: str, as_json: bool
) -> None:
    """Resume paused invocations."""
    _invocation_command("resume", invocation_ids, admin_url, as_json, False, 0, deployment)


@admin_command(invocations, "restart-as-new")
@click.argument("invocation_ids", nargs=-1, required=True)
@click.option(
    "--from",
    "from_index",
    type=click.IntRange(min=0),
    help="Keep the journal up to this entry (included) and what completes it; default: only the input.",
)
@click.option("--deployment", help="With --from: keep, latest (default) or a deployment id.")
def invocations_restart_as_new(
    invocation_ids: tuple[str, ...],
    from_index: int | None,
    deployment: str | None,
    admin_url: str,
    as_json: bool,
) -> None:
    """Start completed invocations again as new ones (the journal must have been retained)."""
    for inv_id in invocation_ids:
        _check_invocation_id(inv_id)
    params = {k: str(v) for k, v in (("from", from_index), ("deployment", deployment)) if v is not None}
    results: list[dict[str, Any]] = []
    failures, exit_code = 0, EXIT_API_ERROR
    with AdminClient(admin_url) as client:
        for inv_id in invocation_ids:
            path = f"/v4/invocations/{seg(inv_id)}/restart-as-new"
            try:
                _, body = client.request("PATCH", path, params=params or None)
            except CliError as e:
                if e.exit_code == EXIT_UNREACHABLE:
                    raise
                failures += 1
                exit_code = e.exit_code if len(invocation_ids) == 1 else EXIT_API_ERROR
                results.append({"id": inv_id, "ok": False, "error": e.message})
                if not as_json:
                    err_console.print(f"[bold red]error:[/] {inv_id}: {e.message}", highlight=False)
                continue
            new_id = body.get("new_invocation_id") if isinstance(body, dict) else None
            results.append({"id": inv_id, "ok": True, "new_invocation_id": new_id})
            if not as_json:
                console.print(f"Restarted {inv_id} as {new_id}", highlight=False)
    if as_json:
        print_json(results)
    if failures:
        sys.exit(exit_code)
