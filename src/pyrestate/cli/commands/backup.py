"""`pyrestate backup`: copy a running SQLite server's database."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pyrestate.cli.options import (
    Command,
)
from pyrestate.cli.render import (
    console,
    err_console,
)
from pyrestate.server import config as server_config


@click.command(cls=Command)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path(".pyrestate"),
    envvar="PYRESTATE_DATA_DIR",
    show_default=True,
    help="Data dir of the (running or stopped) SQLite server. [env PYRESTATE_DATA_DIR]",
)
@click.argument("out", type=click.Path(path_type=Path))
def backup(data_dir: Path, out: Path) -> None:
    """Copy the database of DATA_DIR into the new or empty directory OUT, while the server runs.

    The copy is consistent as of the moment it starts and does not stop the server. To restore: stop the
    server, move its data dir aside, and put OUT in its place.
    """
    from pyrestate.server.storage.datadir import DataDirError, backup

    db = server_config.ServerConfig(data_dir=data_dir).database_path
    try:
        pages, commits = backup(db, out)
    except (DataDirError, OSError) as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(1)
    console.print(
        f"backed up {db} ({pages} pages, up to commit {commits}) to {out / db.name}", highlight=False
    )
