"""The operator console: server-rendered HTML pages under `/ui` on the admin API."""

from pyrestate.server.console.http import ConsoleReply, console_origins
from pyrestate.server.console.routes import serve_console

__all__ = ["ConsoleReply", "console_origins", "serve_console"]
