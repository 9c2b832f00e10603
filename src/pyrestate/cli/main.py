"""`pyrestate`: run the server, serve an SDK app, and talk to the admin API.

Admin subcommands are thin clients of the admin HTTP API (`--admin-url`, env PYRESTATE_ADMIN_URL); new
groups slot in by defining a click group and adding it to `main`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from pyrestate.cli.admin_client import DEFAULT_ADMIN_URL, EXIT_API_ERROR, AdminClient, CliError
from pyrestate.server import config as server_config

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pyrestate", prog_name="pyrestate")
def main() -> None:
    """pyrestate: a Restate-compatible durable-execution server."""


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
    app.main(cfg, core_factory=factory)


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


# ---------------------------------------------------------------------------- deployments


@main.group()
def deployments() -> None:
    """Register and list service deployments."""


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


@deployments.command("register")
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
@admin_url_option
@_handle_errors
def deployments_register(
    uri: str,
    force: bool,
    breaking: bool,
    dry_run: bool,
    use_http_11: bool,
    headers: tuple[str, ...],
    admin_url: str,
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
    with AdminClient(admin_url) as client:
        status, result = client.request("POST", "/v4/deployments", body)
    verb = "validated (dry run)" if dry_run else ("registered" if status == 201 else "already registered")
    console.print(f"Deployment [bold]{result['id']}[/] {verb}: {uri}", highlight=False)
    table = Table("SERVICE", "TYPE", "REVISION", "HANDLERS")
    for s in result.get("services", []):
        table.add_row(
            s["name"],
            s["ty"],
            str(s.get("revision", "")),
            ", ".join(h["name"] for h in s.get("handlers", [])),
        )
    console.print(table)
    if status == 200 and not dry_run and not force:
        console.print("The deployment already existed; use --force to overwrite it.")


@deployments.command("list")
@admin_url_option
@_handle_errors
def deployments_list(admin_url: str) -> None:
    """List registered deployments."""
    with AdminClient(admin_url) as client:
        items = client.get("/v4/deployments")["deployments"]
    table = Table("ID", "URI", "TYPE", "PROTOCOL", "CREATED", "SERVICES")
    for d in items:
        services = ", ".join(f"{s['name']} (rev {s['revision']})" for s in d.get("services", []))
        table.add_row(
            d["id"],
            d.get("uri", ""),
            d.get("protocol_type", ""),
            f"{d.get('min_protocol_version')}-{d.get('max_protocol_version')}",
            d.get("created_at", ""),
            services,
        )
    console.print(table)


# ---------------------------------------------------------------------------- services


@main.group()
def services() -> None:
    """Inspect registered services."""


@services.command("list")
@admin_url_option
@_handle_errors
def services_list(admin_url: str) -> None:
    """List registered services."""
    with AdminClient(admin_url) as client:
        items = client.get("/v4/services")["services"]
    table = Table("NAME", "TYPE", "REVISION", "DEPLOYMENT", "PUBLIC", "HANDLERS")
    for s in items:
        table.add_row(
            s["name"],
            s["ty"],
            str(s["revision"]),
            s["deployment_id"],
            str(s["public"]).lower(),
            str(len(s.get("handlers", []))),
        )
    console.print(table)


__all__ = ["EXIT_API_ERROR", "main"]

if __name__ == "__main__":
    main()
