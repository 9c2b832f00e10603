"""`pyrestate sql`: a SQL query over the introspection tables."""

from __future__ import annotations

import time

import click

from pyrestate.cli.admin_client import (
    AdminClient,
)
from pyrestate.cli.options import (
    admin_command,
)
from pyrestate.cli.render import (
    console,
    err_console,
    print_json,
    rows_table,
)


@admin_command(None, "sql")
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
