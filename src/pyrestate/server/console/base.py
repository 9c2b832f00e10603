"""What every family of console handlers stands on: the engine, and reads through the admin API's `/query`
(the same SQL engine, read-only and bounded), with the helpers that put values into SQL text."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pyrestate.server.asgi import Headers
from pyrestate.server.core_api import ServerCore

# `(headers, body)` → an answer with `.status` and `.body` (bytes): the admin app's `POST /query` handler.
SqlFn = Callable[[Headers, Any], Awaitable[Any]]
# `{"uri": …, "force": …}` → the admin app's registration answer (`.status`, `.body`); raises an error with a
# `.message` when the registration is refused.
RegisterFn = Callable[[dict[str, Any]], Awaitable[Any]]

_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,9})?)?Z?")


class SqlFailed(Exception):
    """A `/query` the SQL engine refused or failed; the message is shown on the page."""


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ms_text(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sql_time(text: str) -> str | None:
    """A SQL timestamp from a form's `datetime-local` value or a row's `created_at` (UTC), None if neither."""
    text = text.strip()
    if not _TIME.fullmatch(text):
        return None
    return f"CAST({sql_str(text.removesuffix('Z') + 'Z')} AS TIMESTAMP)"


class ConsoleBase:
    """The engine, the `/query` handler, and what the admin app lends the console (registration)."""

    def __init__(
        self,
        core: ServerCore,
        sql: SqlFn,
        origins: frozenset[str],
        *,
        register: RegisterFn | None = None,
        ingress_endpoint: str | None = None,
    ) -> None:
        self.core = core
        self._sql = sql
        self.origins = origins
        self._register = register
        self.ingress_endpoint = ingress_endpoint

    async def query(self, sql: str) -> list[dict[str, Any]]:
        answer = await self._sql([("accept", "application/json")], {"query": sql})
        body = bytes(answer.body or b"")
        if answer.status != 200:
            try:
                message = str(json.loads(body)["message"])
            except (ValueError, KeyError, TypeError):
                message = body.decode("utf-8", "replace") or f"query failed ({answer.status})"
            raise SqlFailed(message)
        rows: list[dict[str, Any]] = json.loads(body)["rows"]
        return rows
