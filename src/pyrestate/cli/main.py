"""`pyrestate`: run the server, serve an SDK app, and operate a running server through its admin API.

Admin subcommands are thin clients of the admin HTTP API (`--admin-url`, env PYRESTATE_ADMIN_URL). Read
commands print rich tables, or JSON with `--json`. Exit codes: 0 ok, 1 error, 2 usage, 3 server unreachable,
4 not found.
"""

from __future__ import annotations

from typing import cast

import click

from pyrestate.cli.admin_client import EXIT_API_ERROR
from pyrestate.cli.commands import (
    backup,
    deployments,
    invocations,
    kafka_clusters,
    kv,
    server,
    services,
    sql,
    subscriptions,
)
from pyrestate.cli.options import EXIT_CODES_HELP, Group


@click.group(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(package_name="pyrestate", prog_name="pyrestate")
def main() -> None:
    """pyrestate: a Restate-compatible durable-execution server.

    New here? `pyrestate dev app:app` starts a server, serves your SDK app and registers it.
    """


for command in (
    server.server,
    server.serve,
    server.dev,
    backup.backup,
    deployments.deployments,
    services.services,
    invocations.invocations,
    kv.kv,
    subscriptions.subscriptions,
    kafka_clusters.kafka_clusters,
    cast(click.Command, sql.sql),  # admin_command keeps the function's static type
):
    main.add_command(command)
main.add_command(subscriptions.subscriptions, "sub")

__all__ = ["EXIT_API_ERROR", "main"]

if __name__ == "__main__":
    main()
