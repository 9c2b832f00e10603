"""What the `pyrestate` subcommands share: help formatting, the admin API options, error handling that
maps CliError to exit codes, and a progress spinner."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pyrestate.cli.admin_client import DEFAULT_ADMIN_URL, CliError
from pyrestate.cli.render import err_console

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = "Exit codes: 0 ok, 1 error, 2 usage, 3 server unreachable, 4 not found."


def _full_short_help(cmd: click.Command) -> str:
    # click cuts the one-line summaries in command lists at about 45 characters (mid-sentence, or even
    # inside "(e.g."); the first line of the docstring is written to be read whole.
    if cmd.short_help:
        return cmd.short_help
    return (cmd.help or "").strip().split("\n\n")[0].replace("\n", " ").strip()


class Command(click.Command):
    def get_short_help_str(self, limit: int = 45) -> str:
        return _full_short_help(self)


class Group(click.Group):
    command_class = Command
    group_class = type  # subgroups are of this class too

    def get_short_help_str(self, limit: int = 45) -> str:
        return _full_short_help(self)


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CliError as e:
            err_console.print(f"[bold red]error:[/] {e.message}", highlight=False, soft_wrap=True)
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


def admin_command(group: click.Group | None, name: str, **kw: Any) -> Callable[[F], F]:
    """A subcommand talking to the admin API: `--admin-url`, `--json`, CliError mapped to exit codes.
    Without a group it is a top-level command, added to `main` by `cli.main`."""

    def decorate(fn: F) -> F:
        make = group.command if group is not None else functools.partial(click.command, cls=Command)
        return make(name, epilog=EXIT_CODES_HELP, **kw)(  # type: ignore[return-value]
            admin_url_option(json_option(handle_errors(fn)))
        )

    return decorate


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def progress_spinner(message: str, quiet: bool) -> Any:
    """A spinner on stderr while a slow request runs; nothing when printing JSON or not on a terminal."""
    if quiet or not err_console.is_terminal:
        return _NoProgress()
    return err_console.status(message)
