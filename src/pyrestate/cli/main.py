"""`pyrestate`: run the server, serve an SDK app, and operate a running server through its admin API.

Admin subcommands are thin clients of the admin HTTP API (`--admin-url`, env PYRESTATE_ADMIN_URL). Read
commands print rich tables, or JSON with `--json`. Exit codes: 0 ok, 1 error, 2 usage, 3 server unreachable,
4 not found.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pyrestate.cli.admin_client import (
    DEFAULT_ADMIN_URL,
    EXIT_API_ERROR,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    AdminClient,
    CliError,
    seg,
)
from pyrestate.cli.render import (
    console,
    err_console,
    print_json,
    rows_table,
    sql_str,
    status_text,
    table,
    timeline,
)
from pyrestate.server import config as server_config

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = "Exit codes: 0 ok, 1 error, 2 usage, 3 server unreachable, 4 not found."


def _handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CliError as e:
            err_console.print(f"[bold red]error:[/] {e.message}", highlight=False)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


def admin_url_option(fn: F) -> F:
    return click.option(
        "--admin-url",
        envvar="PYRESTATE_ADMIN_URL",
        default=DEFAULT_ADMIN_URL,
        show_default=True,
        help="Base URL of the admin API.",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)


def admin_command(group: click.Group, name: str, **kw: Any) -> Callable[[F], F]:
    """A subcommand talking to the admin API: `--admin-url`, `--json`, CliError mapped to exit codes."""

    def decorate(fn: F) -> F:
        return group.command(name, epilog=EXIT_CODES_HELP, **kw)(  # type: ignore[return-value]
            admin_url_option(json_option(_handle_errors(fn)))
        )

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="pyrestate", prog_name="pyrestate")
def main() -> None:
    """pyrestate: a Restate-compatible durable-execution server.

    New here? `pyrestate dev app:app` starts a server, serves your SDK app and registers it.
    """


# ---------------------------------------------------------------------------- server


def _server_options(fn: F) -> F:
    defaults = server_config.ServerConfig()
    for opt in reversed(server_config.OPTIONS):
        if opt.is_flag:
            fn = click.option(
                opt.flag,
                opt.field,
                is_flag=True,
                default=None,
                envvar=opt.env,
                help=f"{opt.help} [env {opt.env}]",
            )(fn)
        else:
            fn = click.option(
                opt.flag,
                opt.field,
                default=None,
                envvar=opt.env,
                metavar="VALUE",
                help=f"{opt.help} [default: {opt.show_default(defaults)}; env {opt.env}]",
            )(fn)
    return fn


@main.command()
@_server_options
def server(**values: Any) -> None:
    """Run the pyrestate server (ingress and admin APIs, engine) in this process."""
    from pyrestate.server import app

    raw = {k: (("true" if v else None) if isinstance(v, bool) else v) for k, v in values.items()}
    try:
        cfg = server_config.from_values(raw)
        factory = app.load_core_factory()
    except (server_config.ConfigError, app.EngineUnavailable) as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
    from pyrestate.server.core_api import Unavailable

    try:
        app.main(cfg, core_factory=factory)
    except server_config.ConfigError as e:  # e.g. a data dir laid out for another number of workers
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
    except Unavailable as e:  # e.g. a data dir that cannot be written
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(1)


@main.command()
@click.argument("app_ref", metavar="MODULE:APP")
@click.option("--bind", default="127.0.0.1:9080", show_default=True, help="host:port to listen on.")
@click.option("--workers", default=1, show_default=True, help="Worker processes.")
def serve(app_ref: str, bind: str, workers: int) -> None:
    """Serve an SDK ASGI app (e.g. `restate.app(...)`) with hypercorn, HTTP/1.1 and h2c.

    Keep-alive limits are lifted so that the server's pooled long-lived connections are never cut.
    """
    from hypercorn.config import Config
    from hypercorn.run import run

    if ":" not in app_ref:
        raise click.BadParameter("expected MODULE:APP", param_hint="MODULE:APP")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    cfg = Config()
    cfg.application_path = app_ref
    cfg.bind = [bind]
    cfg.workers = workers
    cfg.keep_alive_timeout = 3600
    cfg.keep_alive_max_requests = 1_000_000_000
    cfg.graceful_timeout = 1
    sys.exit(run(cfg))


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("app_ref", metavar="MODULE:APP")
@click.option("--ingress-port", default=8080, show_default=True, help="Port of the ingress API.")
@click.option("--admin-port", default=9070, show_default=True, help="Port of the admin API.")
@click.option("--app-port", default=9080, show_default=True, help="Port the SDK app is served on.")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path(".pyrestate"),
    show_default=True,
    help="Server data directory (kept between runs).",
)
@click.option("--ephemeral", is_flag=True, help="Use a temporary data directory, removed on exit.")
@click.option("--startup-timeout", default=30.0, show_default=True, help="Seconds to wait for startup.")
@_handle_errors
def dev(
    app_ref: str,
    ingress_port: int,
    admin_port: int,
    app_port: int,
    data_dir: Path,
    ephemeral: bool,
    startup_timeout: float,
) -> None:
    """Start a server, serve the SDK app MODULE:APP and register it: one command to get going.

    Everything runs on 127.0.0.1 and stops with Ctrl-C.
    """
    from pyrestate.cli.dev import DevOptions, run_dev

    code = run_dev(
        DevOptions(
            app_ref=app_ref,
            data_dir=None if ephemeral else data_dir,
            ingress_port=ingress_port,
            admin_port=admin_port,
            app_port=app_port,
            startup_timeout=startup_timeout,
        )
    )
    sys.exit(code)


# ---------------------------------------------------------------------------- deployments


@main.group()
def deployments() -> None:
    """Register, list and remove service deployments."""


def _parse_headers(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--header")
        out[name.strip()] = value.strip()
    return out


@admin_command(deployments, "register")
@click.argument("uri")
@click.option("--force", is_flag=True, help="Overwrite an existing deployment and allow breaking changes.")
@click.option("--breaking", is_flag=True, help="Allow breaking changes to existing services.")
@click.option("--dry-run", is_flag=True, help="Discover and validate without registering.")
@click.option("--use-http-11", is_flag=True, help="Talk to the deployment over HTTP/1.1 (request/response).")
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="NAME=VALUE",
    help="Extra header sent to the deployment (repeatable).",
)
def deployments_register(
    uri: str,
    force: bool,
    breaking: bool,
    dry_run: bool,
    use_http_11: bool,
    headers: tuple[str, ...],
    admin_url: str,
    as_json: bool,
) -> None:
    """Discover the services at URI and register them."""
    body = {
        "uri": uri,
        "additional_headers": _parse_headers(headers) or None,
        "use_http_11": use_http_11,
        "breaking": breaking,
        "force": force,
        "dry_run": dry_run,
    }
    with AdminClient(admin_url, timeout=60.0) as client, _progress(f"Discovering {uri}…", as_json):
        status, result = client.request("POST", "/v4/deployments", body)
    if as_json:
        print_json(result)
        return
    existed = status == 200
    verb = "validated (dry run)" if dry_run else ("already registered" if existed else "registered")
    console.print(f"Deployment [bold]{result['id']}[/] {verb}: {uri}", highlight=False)
    console.print(
        table(
            ["SERVICE", "TYPE", "REVISION", "HANDLERS"],
            (
                [
                    s["name"],
                    s["ty"],
                    s.get("revision", ""),
                    ", ".join(h["name"] for h in s.get("handlers", [])),
                ]
                for s in result.get("services", [])
            ),
        )
    )
    if existed and not dry_run and not force:
        console.print("The deployment already existed; use --force to overwrite it.")


@admin_command(deployments, "list")
def deployments_list(admin_url: str, as_json: bool) -> None:
    """List registered deployments."""
    with AdminClient(admin_url) as client:
        items = client.get("/v4/deployments")["deployments"]
    if as_json:
        print_json(items)
        return
    if not items:
        err_console.print(
            "No deployments registered. Register one with `pyrestate deployments register URI`."
        )
        return
    console.print(
        table(
            ["ID", "URI", "TYPE", "PROTOCOL", "CREATED", "SERVICES"],
            (
                [
                    d["id"],
                    d.get("uri", ""),
                    d.get("protocol_type", ""),
                    f"{d.get('min_protocol_version')}-{d.get('max_protocol_version')}",
                    d.get("created_at", ""),
                    ", ".join(f"{s['name']} (rev {s['revision']})" for s in d.get("services", [])),
                ]
                for d in items
            ),
        )
    )


@admin_command(deployments, "remove")
@click.argument("deployment_id")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def deployments_remove(deployment_id: str, yes: bool, admin_url: str, as_json: bool) -> None:
    """Remove a deployment and the services it registered (in-flight invocations on it will fail)."""
    with AdminClient(admin_url) as client:
        dep = client.get(f"/v4/deployments/{seg(deployment_id)}")
        names = [s["name"] for s in dep.get("services", [])]
        if not yes and not as_json:
            click.confirm(
                f"Remove deployment {deployment_id} ({dep.get('uri')}) and services {', '.join(names)}?",
                abort=True,
            )
        client.request("DELETE", f"/v4/deployments/{seg(deployment_id)}", params={"force": "true"})
    if as_json:
        print_json({"id": deployment_id, "removed": True, "services": names})
    else:
        console.print(f"Removed deployment [bold]{deployment_id}[/]", highlight=False)


# ---------------------------------------------------------------------------- services


@main.group()
def services() -> None:
    """Inspect registered services."""


@admin_command(services, "list")
def services_list(admin_url: str, as_json: bool) -> None:
    """List registered services."""
    with AdminClient(admin_url) as client:
        items = client.get("/v4/services")["services"]
    if as_json:
        print_json(items)
        return
    if not items:
        err_console.print(
            "No services registered. Register a deployment with `pyrestate deployments register`."
        )
        return
    console.print(
        table(
            ["NAME", "TYPE", "REVISION", "DEPLOYMENT", "PUBLIC", "HANDLERS"],
            (
                [
                    s["name"],
                    s["ty"],
                    s["revision"],
                    s["deployment_id"],
                    str(s["public"]).lower(),
                    ", ".join(h["name"] for h in s.get("handlers", [])),
                ]
                for s in sorted(items, key=lambda s: s["name"])
            ),
        )
    )


@admin_command(services, "describe")
@click.argument("service")
def services_describe(service: str, admin_url: str, as_json: bool) -> None:
    """Show a service: type, deployment, settings and handlers with their input and output."""
    with AdminClient(admin_url) as client:
        svc = client.get(f"/v4/services/{seg(service)}")
        dep = client.get(f"/v4/deployments/{seg(svc['deployment_id'])}")
    if as_json:
        print_json({**svc, "deployment": {k: v for k, v in dep.items() if k != "services"}})
        return
    info = [
        ("Name", svc["name"]),
        ("Type", svc["ty"]),
        ("Revision", svc["revision"]),
        ("Public", str(svc["public"]).lower()),
        ("Deployment", f"{svc['deployment_id']} ({dep.get('uri', '?')})"),
        ("SDK", dep.get("sdk_version") or "?"),
    ]
    for key in (
        "inactivity_timeout",
        "abort_timeout",
        "journal_retention",
        "idempotency_retention",
        "workflow_completion_retention",
    ):
        if svc.get(key) is not None:
            info.append((key.replace("_", " ").capitalize(), svc[key]))
    console.print(table(["", ""], info, title="Service"))
    console.print(
        table(
            ["HANDLER", "TYPE", "INPUT", "OUTPUT", "PUBLIC"],
            (
                [
                    h["name"],
                    h.get("ty", ""),
                    h.get("input_description", ""),
                    h.get("output_description", ""),
                    str(h.get("public", True)).lower(),
                ]
                for h in svc.get("handlers", [])
            ),
            title="Handlers",
        )
    )


_STATUS_COLUMNS = (
    "pending",
    "scheduled",
    "ready",
    "running",
    "backing-off",
    "suspended",
    "paused",
    "completed",
)


@admin_command(services, "status")
@click.argument("service", required=False)
def services_status(service: str | None, admin_url: str, as_json: bool) -> None:
    """Invocation counts per service and handler, by status."""
    where = f" WHERE target_service_name = {sql_str(service)}" if service else ""
    with AdminClient(admin_url) as client:
        names = [s["name"] for s in client.get("/v4/services")["services"]]
        if service and service not in names:
            raise CliError(f"The requested service '{service}' does not exist", EXIT_NOT_FOUND)
        rows = client.query(
            "SELECT target_service_name AS service, target_handler_name AS handler, status, "
            f"COUNT(*) AS n FROM sys_invocation{where} "
            "GROUP BY target_service_name, target_handler_name, status"
        )
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        counts.setdefault((r["service"], r["handler"]), {})[r["status"]] = int(r["n"])
    if as_json:
        print_json([{"service": s, "handler": h, "counts": c} for (s, h), c in sorted(counts.items())])
        return
    out = []
    for (svc_name, handler), c in sorted(counts.items()):
        out.append([svc_name, handler, *(c.get(k) or "-" for k in _STATUS_COLUMNS)])
    for name in sorted(set(names) - {s for s, _ in counts}):
        if not service or name == service:
            out.append([name, "", *("-" for _ in _STATUS_COLUMNS)])
    console.print(table(["SERVICE", "HANDLER", *(k.upper() for k in _STATUS_COLUMNS)], out))


# ---------------------------------------------------------------------------- invocations


@main.group()
def invocations() -> None:
    """List, inspect and control invocations."""


_LIST_COLUMNS = (
    "id, target, status, completion_result, completion_failure, created_at, modified_at, retry_count, "
    "next_retry_at, last_failure, idempotency_key, pinned_deployment_id, invoked_by_target, invoked_by"
)


@admin_command(invocations, "list")
@click.option("--all", "show_all", is_flag=True, help="Include completed invocations.")
@click.option("--service", help="Only invocations of this service.")
@click.option("--status", "status_filter", help="Only invocations with this status (running, suspended, …).")
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
        conds.append(f"status = {sql_str(status_filter)}")
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
    with _progress(f"Waiting for {len(ids)} invocation(s) to complete…", quiet):
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


# ---------------------------------------------------------------------------- kv


@main.group()
def kv() -> None:
    """Read and change the state of a virtual object or workflow key."""


def _read_state(client: AdminClient, service: str, key: str) -> list[dict[str, Any]]:
    svc = client.get(f"/v4/services/{seg(service)}")
    if svc["ty"] == "Service":
        raise CliError(f"'{service}' is a plain service and has no state", EXIT_USAGE)
    return client.query(
        "SELECT key, value_utf8, value FROM state "
        f"WHERE service_name = {sql_str(service)} AND service_key = {sql_str(key)} ORDER BY key"
    )


def _state_bytes(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    return {r["key"]: list(bytes.fromhex(r.get("value") or "")) for r in rows}


@admin_command(kv, "get")
@click.argument("service")
@click.argument("key")
def kv_get(service: str, key: str, admin_url: str, as_json: bool) -> None:
    """Show the state of SERVICE/KEY (values as UTF-8 text where possible, else hex)."""
    with AdminClient(admin_url) as client:
        rows = _read_state(client, service, key)
    if as_json:
        print_json(
            {
                "service": service,
                "key": key,
                "state": [
                    {"key": r["key"], "value_utf8": r.get("value_utf8"), "value_hex": r.get("value") or ""}
                    for r in rows
                ],
            }
        )
        return
    if not rows:
        err_console.print(f"{service}/{key} has no state.")
        return
    console.print(
        table(
            ["KEY", "VALUE"],
            (
                [
                    r["key"],
                    r.get("value_utf8") if r.get("value_utf8") is not None else f"0x{r.get('value', '')}",
                ]
                for r in rows
            ),
            title=f"{service}/{key}",
        )
    )


@admin_command(kv, "set")
@click.argument("service")
@click.argument("key")
@click.argument("name")
@click.argument("value")
@click.option("--raw", is_flag=True, help="Store VALUE's text as is instead of checking it is JSON.")
def kv_set(service: str, key: str, name: str, value: str, raw: bool, admin_url: str, as_json: bool) -> None:
    """Set state entry NAME of SERVICE/KEY to VALUE (JSON, as the SDKs serialize it by default).

    The server replaces an object's whole state at once: the other entries are read first and written back
    unchanged, so do not race this with running handlers of the same key.
    """
    if not raw:
        try:
            json.loads(value)
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is not JSON; quote strings ('\"text\"') or pass --raw", param_hint="VALUE"
            ) from None
    with AdminClient(admin_url) as client:
        state = _state_bytes(_read_state(client, service, key))
        state[name] = list(value.encode())
        client.request("POST", f"/v4/services/{seg(service)}/state", {"object_key": key, "new_state": state})
    if as_json:
        print_json({"service": service, "key": key, "set": name})
    else:
        console.print(f"Set {service}/{key} {name} = {value}", highlight=False)


@admin_command(kv, "clear")
@click.argument("service")
@click.argument("key")
@click.argument("name", required=False)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def kv_clear(service: str, key: str, name: str | None, yes: bool, admin_url: str, as_json: bool) -> None:
    """Clear all state of SERVICE/KEY, or only entry NAME."""
    with AdminClient(admin_url) as client:
        state = _state_bytes(_read_state(client, service, key))
        if name is not None:
            if name not in state:
                raise CliError(f"{service}/{key} has no state entry '{name}'", EXIT_NOT_FOUND)
            del state[name]
        else:
            if not yes and not as_json:
                click.confirm(f"Clear all {len(state)} state entries of {service}/{key}?", abort=True)
            state = {}
        client.request("POST", f"/v4/services/{seg(service)}/state", {"object_key": key, "new_state": state})
    if as_json:
        print_json({"service": service, "key": key, "cleared": name or "*"})
    else:
        console.print(f"Cleared {service}/{key}" + (f" {name}" if name else ""), highlight=False)


# ---------------------------------------------------------------------------- sql


@admin_command(main, "sql")
@click.argument("query")
def sql(query: str, admin_url: str, as_json: bool) -> None:
    """Run a SQL QUERY over the introspection tables (sys_invocation, sys_journal, state, …)."""
    started = time.monotonic()
    with AdminClient(admin_url) as client:
        rows = client.query(query)
    if as_json:
        print_json(rows)
        return
    console.print(rows_table(rows))
    err_console.print(f"{len(rows)} row(s) in {(time.monotonic() - started) * 1000:.0f} ms.")


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(message: str, quiet: bool) -> Any:
    """A spinner on stderr while a slow request runs; nothing when printing JSON or not on a terminal."""
    if quiet or not err_console.is_terminal:
        return _NoProgress()
    return err_console.status(message)


__all__ = ["EXIT_API_ERROR", "main"]

if __name__ == "__main__":
    main()
