"""Routing of the operator console (`/ui/…` on the admin API): reads go through the `/query` machinery,
actions through the same engine operation as `PATCH /invocations/{id}/{verb}`.

Action forms and the SQL form are POSTs; a POST whose `Sec-Fetch-Site` says it comes from another site, or
whose `Origin` is not one of the console's own addresses, is refused, because a plain HTML form is the one
request a foreign page can make a browser send here. The addresses come from the configuration, never from
the request's `Host` (a DNS-rebinding page sends a `Host` that matches its own `Origin`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from pyrestate.server import core_api
from pyrestate.server.asgi import BodyTooLarge, Headers, Receive, header, read_body
from pyrestate.server.console import render
from pyrestate.server.core_api import InvocationCommand, ServerCore
from pyrestate.server.deployments import redact_uri

LIST_LIMIT = 100
STATE_PAGE = 100
JOURNAL_LIMIT = 1000
SQL_ROW_LIMIT = 500
MAX_FORM_BODY = 64 * 1024

# `(headers, body)` → an answer with `.status` and `.body` (bytes): the admin app's `POST /query` handler.
SqlFn = Callable[[Headers, Any], Awaitable[Any]]

_HEADERS = [
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    ),
]
_COMMANDS: dict[str, InvocationCommand] = {c.value: c for c in InvocationCommand if c.value in render.ACTIONS}
_DONE = {
    "cancel": "Cancellation requested.",
    "kill": "Kill requested.",
    "purge": "Invocation purged.",
    "pause": "Pause requested.",
    "resume": "Resume requested.",
}
_FAILED = {
    "notfound": "The invocation does not exist.",
    "conflict": "The action does not apply to the invocation in its current status.",
    "badrequest": "The engine refused the action.",
    "unavailable": "The engine is unavailable, nothing was changed.",
}


@dataclass(slots=True)
class ConsoleReply:
    status: int
    body: bytes | None
    headers: list[tuple[str, str]] = field(default_factory=list)


class SqlFailed(Exception):
    pass


def _html(status: int, text: str) -> ConsoleReply:
    return ConsoleReply(status, text.encode(), list(_HEADERS))


def _redirect(location: str) -> ConsoleReply:
    return ConsoleReply(303, b"", [("location", location), ("cache-control", "no-store")])


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ms_text(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")


def console_origins(admin_bind: str, admin_url: str | None = None) -> frozenset[str]:
    """The origins (`scheme://host:port`, lower case) a console page can have: `admin_url` when configured,
    and `http://` + the bind address, with the loopback names when bound to loopback or to every address."""
    host, _, port = admin_bind.rpartition(":")
    host = host.lower()
    hosts = {host}
    if host in ("0.0.0.0", "[::]", "::", "localhost", "[::1]") or host.startswith("127."):
        hosts.update(_LOCAL_NAMES)
    origins = {f"http://{h}:{port}" for h in hosts}
    if admin_url:
        parts = urlsplit(admin_url.strip())
        if parts.scheme and parts.netloc:
            netloc = parts.netloc.lower()
            default = {"http": ":80", "https": ":443"}.get(parts.scheme.lower(), "")
            origins.add(f"{parts.scheme.lower()}://{netloc.removesuffix(default)}")
    return frozenset(origins)


def cross_site(headers: Headers, origins: frozenset[str]) -> bool:
    """True when the browser says the request was made by a page of another origin."""
    fetch_site = header(headers, "sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return True
    origin = header(headers, "origin")
    if origin is None:
        return False  # not sent by a browser form (browsers send Origin on every POST)
    return origin.strip().rstrip("/").lower() not in origins


class Console:
    def __init__(self, core: ServerCore, sql: SqlFn, origins: frozenset[str]) -> None:
        self.core = core
        self._sql = sql
        self.origins = origins

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

    async def serve(
        self,
        method: str,
        segments: Sequence[str],
        query: Mapping[str, str],
        receive: Receive,
        headers: Headers,
    ) -> ConsoleReply:
        try:
            return await self._route(method, segments, query, receive, headers)
        except SqlFailed as e:
            return _html(503, render.message_page("Query failed", str(e)))

    async def _route(
        self,
        method: str,
        segments: Sequence[str],
        query: Mapping[str, str],
        receive: Receive,
        headers: Headers,
    ) -> ConsoleReply:
        match segments:
            case [] | [""]:
                return self._only(method, "GET") or await self.overview()
            case ["invocations"]:
                return self._only(method, "GET") or await self.invocations(
                    query.get("status", "").strip(), query.get("service", "").strip()
                )
            case ["invocations", inv_id]:
                return self._only(method, "GET") or await self.invocation(inv_id, query)
            case ["invocations", inv_id, action] if action in _COMMANDS:
                if denied := self._only(method, "POST"):
                    return denied
                if cross_site(headers, self.origins):
                    return _forbidden()
                return await self.act(inv_id, action)
            case ["state", service, key]:
                return self._only(method, "GET") or await self.state(service, key, query.get("after"))
            case ["sql"]:
                if method == "GET":
                    return _html(200, render.sql_page(""))
                if method != "POST":
                    return _not_allowed("GET, POST")
                if cross_site(headers, self.origins):
                    return _forbidden()
                try:
                    form = dict(parse_qsl((await read_body(receive, headers, MAX_FORM_BODY)).decode()))
                except BodyTooLarge:
                    return _html(413, render.sql_page("", error="The query is too long."))
                except UnicodeDecodeError:
                    return _html(400, render.sql_page("", error="The form is not UTF-8."))
                return await self.sql(form.get("query", ""))
            case _:
                return _html(404, render.message_page("Not found", "No such console page."))

    @staticmethod
    def _only(method: str, allowed: str) -> ConsoleReply | None:
        return None if method == allowed else _not_allowed(allowed)

    async def overview(self) -> ConsoleReply:
        services = [
            {
                "name": s.name,
                "ty": s.ty.admin_name,
                "handlers": sorted(s.handlers),
                "deployment_id": s.deployment_id,
            }
            for s in sorted(self.core.list_services(), key=lambda s: s.name)
        ]
        deployments = [
            {
                "id": d.id,
                "endpoint": redact_uri(d.uri),
                "created_at": _ms_text(d.created_at_ms),
                "services": [s.name for s in d.services],
            }
            for d in await self.core.list_deployments()
        ]
        try:
            counts = await self.query(
                "SELECT status, COUNT(*) AS n FROM sys_invocation GROUP BY status ORDER BY status"
            )
        except SqlFailed as e:
            return _html(200, render.page("Overview", "", error=f"Counting invocations failed: {e}"))
        return _html(200, render.overview_page(services, deployments, counts))

    async def invocations(self, status: str, service: str) -> ConsoleReply:
        where = []
        if status:
            where.append(f"status = {sql_str(status)}")
        if service:
            where.append(f"target_service_name = {sql_str(service)}")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.query(
            "SELECT id, target, status, completion_result, created_at, modified_at, last_failure "
            f"FROM sys_invocation{clause} ORDER BY created_at DESC, id LIMIT {LIST_LIMIT}"
        )
        return _html(200, render.invocations_page(rows, status=status, service=service, limit=LIST_LIMIT))

    async def invocation(self, inv_id: str, query: Mapping[str, str]) -> ConsoleReply:
        found = await self.query(f"SELECT * FROM sys_invocation WHERE id = {sql_str(inv_id)} LIMIT 1")
        if not found:
            return _html(
                404, render.message_page("Not found", f"The requested invocation '{inv_id}' does not exist")
            )
        journal = await self.query(
            "SELECT index, entry_type, name, completed, invoked_id, invoked_target, sleep_wakeup_at, "
            f"promise_name, appended_at FROM sys_journal WHERE id = {sql_str(inv_id)} "
            f"ORDER BY index LIMIT {JOURNAL_LIMIT}"
        )
        # Only fixed texts: a crafted link cannot put words of its own on the page.
        flash = _DONE.get(query.get("done", ""))
        error = _FAILED.get(query.get("failed", ""))
        return _html(200, render.invocation_page(found[0], journal, flash=flash, error=error))

    async def act(self, inv_id: str, action: str) -> ConsoleReply:
        back = render.invocation_href(inv_id)
        try:
            await self.core.invocation_command(inv_id, _COMMANDS[action], deployment_id=None)
        except core_api.NotFound:
            return _redirect(f"{back}?{urlencode({'failed': 'notfound'})}")
        except core_api.Conflict:
            return _redirect(f"{back}?{urlencode({'failed': 'conflict'})}")
        except core_api.BadRequest:
            return _redirect(f"{back}?{urlencode({'failed': 'badrequest'})}")
        except core_api.Unavailable:
            return _redirect(f"{back}?{urlencode({'failed': 'unavailable'})}")
        return _redirect(f"{back}?{urlencode({'done': action})}")

    async def state(self, service: str, key: str, after: str | None) -> ConsoleReply:
        if self.core.lookup_service(service) is None:
            return _html(
                404, render.message_page("Not found", f"The requested service '{service}' does not exist")
            )
        # One page at a time, from the key after the last one shown: an object with many keys must not make
        # the query sort (and the page show) all of its values.
        since = f" AND key > {sql_str(after)}" if after else ""
        rows = await self.query(
            "SELECT key, value_utf8, value FROM state "
            f"WHERE service_name = {sql_str(service)} AND service_key = {sql_str(key)}{since} "
            f"ORDER BY key LIMIT {STATE_PAGE + 1}"
        )
        more = len(rows) > STATE_PAGE
        rows = rows[:STATE_PAGE]
        next_after = str(rows[-1]["key"]) if more and rows else None
        return _html(200, render.state_page(service, key, rows, after=after, next_after=next_after))

    async def sql(self, sql: str) -> ConsoleReply:
        if not sql.strip():
            return _html(400, render.sql_page(sql, error="Enter a query."))
        try:
            rows = await self.query(sql)
        except SqlFailed as e:
            return _html(400, render.sql_page(sql, error=str(e)))
        return _html(200, render.sql_page(sql, rows, limit=SQL_ROW_LIMIT))


def _forbidden() -> ConsoleReply:
    return _html(403, render.message_page("Forbidden", "Cross-site form submission refused."))


def _not_allowed(allow: str) -> ConsoleReply:
    return ConsoleReply(405, None, [("allow", allow)])


async def serve_console(
    core: ServerCore,
    sql: SqlFn,
    origins: frozenset[str],
    method: str,
    segments: Sequence[str],
    query: Mapping[str, str],
    receive: Receive,
    headers: Headers,
) -> ConsoleReply:
    return await Console(core, sql, origins).serve(method, segments, query, receive, headers)
