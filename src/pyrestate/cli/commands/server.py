"""`pyrestate server`, `serve` and `dev`: run the server, serve an SDK app, or both with registration."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pyrestate.cli.options import (
    EXIT_CODES_HELP,
    Command,
    F,
    handle_errors,
)
from pyrestate.cli.render import (
    err_console,
)
from pyrestate.server import config as server_config

# The kind of value each server option takes, shown in --help (config.py parses the text).
_SERVER_METAVARS = {
    "Path": "PATH",
    "_bind": "HOST:PORT",
    "_positive_int": "INTEGER",
    "_duration": "DURATION",
    "_factor": "FLOAT",
    "_on_max_attempts": "[pause|kill]",
    "_size": "SIZE",
    "_log_level": "[debug|info|warning|error]",
    "_log_format": "[text|json]",
    "_log_filter": "FILTER",
    "_identity_key_file": "PEM_FILE",
    "_storage": "sqlite|URL",
    "str": "TEXT",
}


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
                metavar=_SERVER_METAVARS.get(opt.parse.__name__, "TEXT"),
                help=f"{opt.help} [default: {opt.show_default(defaults)}; env {opt.env}]",
            )(fn)
    return fn


def server_config_from_file(path: str | None, raw: dict[str, Any]) -> server_config.ServerConfig:
    """Options of the config file (if any), overridden by flags and environment variables."""
    if path is None:
        return server_config.from_values(raw)
    import dataclasses

    from pyrestate.server import config_file

    values, clusters, unknown = config_file.load(path)
    if unknown:
        err_console.print(
            f"[yellow]warning:[/] {path}: not used by pyrestate: {', '.join(unknown)}", highlight=False
        )
    merged = {**values, **{k: v for k, v in raw.items() if v is not None}}
    cfg = server_config.from_values(merged)
    return dataclasses.replace(cfg, kafka_clusters=clusters)


@click.command(cls=Command)
@_server_options
@click.option(
    "--config-file",
    "config_file",
    default=None,
    envvar="PYRESTATE_CONFIG_FILE",
    metavar="PATH",
    help="Restate's TOML config file (options under their Restate names, [[ingress.kafka-clusters]]); "
    "flags and environment variables win. [env PYRESTATE_CONFIG_FILE]",
)
def server(config_file: str | None = None, **values: Any) -> None:
    """Run the pyrestate server (ingress and admin APIs, engine) in this process."""
    from pyrestate.server import app

    raw = {k: (("true" if v else None) if isinstance(v, bool) else v) for k, v in values.items()}
    try:
        cfg = server_config_from_file(config_file, raw)
    except server_config.ConfigError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
    from pyrestate.server.core_api import Unavailable

    try:
        if cfg.workers > 1:  # a parent supervising worker processes, each serving app.run_server
            from pyrestate.server.cluster.supervisor import run_supervisor

            app.configure_logging(cfg)
            sys.exit(run_supervisor(cfg))
        if cfg.node_bind is not None:  # one node of a cluster on PostgreSQL
            if cfg.storage == "sqlite":
                raise server_config.ConfigError("--node-bind needs --storage postgresql://…")
            from pyrestate.server.cluster.pg_node import create_node_core

            app.main(cfg, core_factory=create_node_core)
            return
        if cfg.storage == "sqlite":
            from pyrestate.server.cluster.layout import check_single_process

            check_single_process(cfg.data_dir)
        app.main(cfg)
    except server_config.ConfigError as e:  # e.g. a data dir laid out for another number of workers
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
    except Unavailable as e:  # e.g. a data dir that cannot be written, locked or damaged
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(1)


@click.command(cls=Command, epilog=EXIT_CODES_HELP)
@click.argument("app_ref", metavar="MODULE:APP")
@click.option("--bind", default="127.0.0.1:9080", show_default=True, help="host:port to listen on.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes (more than one: hypercorn's multi-process runner).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Level of pyrestate's own lines (the start and stop lines are info).",
)
@handle_errors
def serve(app_ref: str, bind: str, workers: int, log_level: str) -> None:
    """Serve an SDK ASGI app (e.g. `restate.app(...)`) with hypercorn, HTTP/1.1 and h2c.

    Keep-alive limits are lifted so that the server's pooled long-lived connections are never cut. Ctrl-C
    gives open invocation streams a second to finish, then exits; the server retries what was interrupted.
    """
    from pyrestate.cli import serve as serve_mod
    from pyrestate.server import logs

    logs.configure(log_level, "text")
    if workers == 1:
        serve_mod.run(app_ref, bind)
    from hypercorn.run import run

    serve_mod.load_app(app_ref)  # one-line errors before spawning workers
    cfg = serve_mod.hypercorn_config(bind, 1.0)
    cfg.application_path = app_ref
    cfg.workers = workers
    sys.exit(run(cfg))


@click.command(cls=Command, epilog=EXIT_CODES_HELP)
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
@handle_errors
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
