"""The operator console: server-rendered HTML pages under `/ui` on the admin API."""

from pyrestate.server.console.routes import ConsoleReply, serve_console

__all__ = ["ConsoleReply", "serve_console"]
