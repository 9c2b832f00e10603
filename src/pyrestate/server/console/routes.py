"""Routing of the operator console (`/ui/…` on the admin API): reads go through the `/query` machinery,
actions through the same engine operations as the admin JSON API.

Every form that changes something is a POST; a POST whose `Sec-Fetch-Site` says it comes from another site,
or whose `Origin` is not one of the console's own addresses, is refused, because a plain HTML form is the one
request a foreign page can make a browser send here. The addresses come from the configuration, never from
the request's `Host` (a DNS-rebinding page sends a `Host` that matches its own `Origin`). Reads (including
SQL, which the query engine keeps read-only and bounded) are GETs, so that their URLs can be shared.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from pyrestate.server import core_api
from pyrestate.server.asgi import BodyTooLarge, Headers, Receive, header, read_body
from pyrestate.server.console import assets, render
from pyrestate.server.core_api import (
    ById,
    IngressInvocation,
    InvocationCommand,
    InvocationTarget,
    ServerCore,
    ServiceType,
    Success,
)
from pyrestate.server.deployments import redact_uri

LIST_PAGE = 50
STATE_PAGE = 100
KEYS_PAGE = 100
JOURNAL_LIMIT = 1000
SQL_ROW_LIMIT = 500
SQL_DOWNLOAD_LIMIT = 100_000
MAX_FORM_BODY = 64 * 1024
# A console edit reads the whole state of the key it changes (the engine replaces state as a whole).
MAX_EDIT_KEYS = 20_000
CALL_WAIT_S = 10.0

# `(headers, body)` → an answer with `.status` and `.body` (bytes): the admin app's `POST /query` handler.
SqlFn = Callable[[Headers, Any], Awaitable[Any]]
# `{"uri": …, "force": …}` → the admin app's registration answer (`.status`, `.body`); raises an error with a
# `.message` when the registration is refused.
RegisterFn = Callable[[dict[str, Any]], Awaitable[Any]]

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_COMMON = [
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    # Not `no-referrer`: with it, Chromium sends `Origin: null` on the console's own form posts, which the
    # cross-site check must refuse. `same-origin` still tells no other site which console page linked to it.
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", _CSP),
]
_HEADERS = [("content-type", "text/html; charset=utf-8"), *_COMMON]
_COMMANDS: dict[str, InvocationCommand] = {c.value: c for c in InvocationCommand if c.value in render.ACTIONS}
_DONE = {
    "cancel": "Cancellation requested.",
    "kill": "Kill requested.",
    "purge": "Invocation purged.",
    "pause": "Pause requested.",
    "resume": "Resume requested.",
    "state": "State update requested.",
    "registered": "Deployment registered.",
    "removed": "Deployment removed.",
}
_FAILED = {
    "notfound": "The invocation does not exist.",
    "conflict": "The action does not apply to the invocation in its current status.",
    "badrequest": "The engine refused the action.",
    "unavailable": "The engine is unavailable, nothing was changed.",
    "nodeployment": "The deployment does not exist.",
}
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,9})?)?Z?")
_STATIC = {
    "console.css": ("text/css; charset=utf-8", assets.CSS),
    "console.js": ("text/javascript; charset=utf-8", assets.JS),
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


def _ts(text: str) -> str | None:
    """A SQL timestamp from a form's `datetime-local` value or a row's `created_at` (UTC), None if neither."""
    text = text.strip()
    if not _TIME.fullmatch(text):
        return None
    return f"CAST({sql_str(text.removesuffix('Z') + 'Z')} AS TIMESTAMP)"


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


def state_version(pairs: Sequence[tuple[str, bytes]]) -> str:
    """A digest of a key's whole state (its names and values, in name order): what an edit form carries, so
    that an edit made on a page showing an older state is refused."""
    h = hashlib.sha256()
    for name, value in sorted(pairs):
        for part in (name.encode(), value):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()[:32]


def encode_value(text: str, encoding: str) -> bytes:
    """A value typed into a form, as the bytes to store. Raises ValueError with a message for people."""
    if encoding == "json":
        try:
            json.loads(text)
        except ValueError as e:
            raise ValueError(f"The value is not JSON: {e}") from None
        return text.encode()
    if encoding == "text":
        return text.encode()
    if encoding == "base64":
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("The value is not base64.") from None
    raise ValueError("Unknown encoding.")


class Console:
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
        live = query.get("live") == "1"
        match segments:
            case [] | [""]:
                return self._only(method, "GET") or await self.overview(query)
            case ["static", name] if name in _STATIC:
                if denied := self._only(method, "GET"):
                    return denied
                ctype, text = _STATIC[name]
                return ConsoleReply(200, text.encode(), [("content-type", ctype), *_COMMON[1:]])
            case ["invocations"]:
                return self._only(method, "GET") or await self.invocations(query)
            case ["invocations", inv_id]:
                return self._only(method, "GET") or await self.invocation(inv_id, query, live)
            case ["invocations", inv_id, action] if action in _COMMANDS:
                if denied := self._post_only(method, headers):
                    return denied
                return await self.act(inv_id, action)
            case ["services"]:
                return self._only(method, "GET") or await self.services()
            case ["services", name]:
                return self._only(method, "GET") or await self.service(name)
            case ["services", name, "openapi"]:
                return self._only(method, "GET") or self.openapi(name)
            case ["services", name, "invoke"]:
                if denied := self._post_only(method, headers):
                    return denied
                form, bad = await _form(receive, headers)
                return bad or await self.invoke(name, form)
            case ["deployments"]:
                if method == "GET":
                    return await self.deployments(query)
                if denied := self._post_only(method, headers, "GET, POST"):
                    return denied
                form, bad = await _form(receive, headers)
                return bad or await self.register(form)
            case ["deployments", dep_id, "remove"]:
                if denied := self._post_only(method, headers):
                    return denied
                return await self.remove_deployment(dep_id)
            case ["state", service]:
                return self._only(method, "GET") or await self.keys(service, query.get("after"))
            case ["state", service, key]:
                if method == "GET":
                    return await self.state(service, key, query)
                if denied := self._post_only(method, headers, "GET, POST"):
                    return denied
                form, bad = await _form(receive, headers)
                return bad or await self.edit_state(service, key, form)
            case ["sql"]:
                if method == "GET":
                    return await self.sql(query.get("q", ""), empty_ok=True)
                if denied := self._post_only(method, headers, "GET, POST"):
                    return denied
                form, bad = await _form(receive, headers)
                return bad or await self.sql(form.get("query", form.get("q", "")))
            case ["sql", "download"]:
                return self._only(method, "GET") or await self.download(
                    query.get("q", ""), query.get("format")
                )
            case _:
                return _html(404, render.message_page("Not found", "No such console page."))

    @staticmethod
    def _only(method: str, allowed: str) -> ConsoleReply | None:
        return None if method == allowed else _not_allowed(allowed)

    def _post_only(self, method: str, headers: Headers, allow: str = "POST") -> ConsoleReply | None:
        if method != "POST":
            return _not_allowed(allow)
        if cross_site(headers, self.origins):
            return _forbidden()
        return None

    # ------------------------------------------------------------------ overview

    async def overview(self, query: Mapping[str, str]) -> ConsoleReply:
        cols = "id, target, status, modified_at, retry_count, last_failure, scheduled_start_at"
        counts = await self.query("SELECT status, COUNT(*) AS n FROM sys_invocation GROUP BY status")
        failing = await self.query(
            f"SELECT {cols} FROM sys_invocation WHERE status = 'backing-off' "
            "ORDER BY modified_at DESC LIMIT 10"
        )
        paused = await self.query(
            f"SELECT {cols} FROM sys_invocation WHERE status = 'paused' ORDER BY modified_at DESC LIMIT 10"
        )
        scheduled = await self.query(
            f"SELECT {cols} FROM sys_invocation WHERE status = 'scheduled' "
            "ORDER BY scheduled_start_at LIMIT 10"
        )
        since = "now() - INTERVAL '10 minutes'"
        created = await self.query(
            "SELECT date_trunc('minute', created_at) AS m, COUNT(*) AS n FROM sys_invocation "
            f"WHERE created_at > {since} GROUP BY 1"
        )
        completed = await self.query(
            "SELECT date_trunc('minute', completed_at) AS m, COUNT(*) AS n FROM sys_invocation "
            f"WHERE completed_at > {since} GROUP BY 1"
        )
        minutes: dict[str, dict[str, Any]] = {}
        for name, rows in (("created", created), ("completed", completed)):
            for r in rows:
                minutes.setdefault(str(r["m"]), {"minute": str(r["m"])})[name] = r["n"]
        throughput = [minutes[m] for m in sorted(minutes)]
        deployments = await self.core.list_deployments()
        return _html(
            200,
            render.overview_page(
                counts,
                failing,
                paused,
                scheduled,
                throughput,
                services=len(self.core.list_services()),
                deployments=len(deployments),
                live=query.get("live", "1") == "1",
            ),
        )

    # ------------------------------------------------------------------ invocations

    async def invocations(self, query: Mapping[str, str]) -> ConsoleReply:
        filters = {k: query.get(k, "").strip() for k in render.FILTERS}
        where: list[str] = []
        error = None
        for name, column in (
            ("id", "id"),
            ("service", "target_service_name"),
            ("handler", "target_handler_name"),
            ("key", "target_service_key"),
            ("deployment", "pinned_deployment_id"),
            ("idempotency_key", "idempotency_key"),
        ):
            if filters[name]:
                where.append(f"{column} = {sql_str(filters[name])}")
        for name, op in (("since", ">="), ("until", "<")):
            if filters[name]:
                ts = _ts(filters[name])
                if ts is None:
                    error = f"'{filters[name]}' is not a time (YYYY-MM-DDTHH:MM[:SS], UTC)."
                else:
                    where.append(f"created_at {op} {ts}")
        counts = await self.query(
            "SELECT status, COUNT(*) AS n FROM sys_invocation"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " GROUP BY status ORDER BY status"
        )
        if filters["status"]:
            where.append(f"status = {sql_str(filters['status'])}")
        # Keyset paging (created_at descending, then id): a page stays the same rows however many are added
        # while the user reads it, and the 1,000th page costs what the first does.
        before = query.get("before", "")
        paged = False
        if before:
            at, _, last_id = before.partition("|")
            ts = _ts(at)
            if ts is not None and last_id:
                paged = True
                where.append(f"(created_at < {ts} OR (created_at = {ts} AND id > {sql_str(last_id)}))")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.query(
            "SELECT id, target, target_service_name, status, completion_result, created_at, modified_at, "
            f"retry_count, last_failure FROM sys_invocation{clause} "
            f"ORDER BY created_at DESC, id LIMIT {LIST_PAGE + 1}"
        )
        next_cursor = None
        if len(rows) > LIST_PAGE:
            rows = rows[:LIST_PAGE]
            next_cursor = f"{rows[-1].get('created_at')}|{rows[-1]['id']}"
        return _html(
            200,
            render.invocations_page(
                rows,
                filters,
                counts,
                next_cursor=next_cursor,
                paged=paged,
                live=query.get("live") == "1",
                error=error,
            ),
        )

    async def invocation(self, inv_id: str, query: Mapping[str, str], live: bool) -> ConsoleReply:
        found = await self.query(f"SELECT * FROM sys_invocation WHERE id = {sql_str(inv_id)} LIMIT 1")
        if not found:
            return _html(
                404, render.message_page("Not found", f"The requested invocation '{inv_id}' does not exist")
            )
        journal = await self.query(
            "SELECT index, entry_type, name, completed, invoked_id, invoked_target, sleep_wakeup_at, "
            f"promise_name, appended_at, entry_json FROM sys_journal WHERE id = {sql_str(inv_id)} "
            f"ORDER BY index LIMIT {JOURNAL_LIMIT}"
        )
        # Only fixed texts: a crafted link cannot put words of its own on the page.
        flash = _DONE.get(query.get("done", ""))
        error = _FAILED.get(query.get("failed", ""))
        return _html(200, render.invocation_page(found[0], journal, flash=flash, error=error, live=live))

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

    # ------------------------------------------------------------------ services and deployments

    async def _pins(self, service: str | None = None) -> dict[str, tuple[int, int]]:
        """deployment id → (active invocations pinned to it, all invocations pinned to it)."""
        where = f" WHERE target_service_name = {sql_str(service)}" if service else ""
        rows = await self.query(
            "SELECT pinned_deployment_id AS d, status = 'completed' AS done, COUNT(*) AS n "
            f"FROM sys_invocation{where} GROUP BY 1, 2"
        )
        pins: dict[str, tuple[int, int]] = {}
        for r in rows:
            if r.get("d") is None:
                continue
            active, total = pins.get(str(r["d"]), (0, 0))
            n = int(r.get("n") or 0)
            pins[str(r["d"])] = (active + (0 if r.get("done") else n), total + n)
        return pins

    async def services(self) -> ConsoleReply:
        services = [
            {
                "name": s.name,
                "ty": s.ty.admin_name,
                "handlers": sorted(s.handlers),
                "deployment_id": s.deployment_id,
                "revision": s.revision,
                "public": s.public,
            }
            for s in sorted(self.core.list_services(), key=lambda s: s.name)
        ]
        return _html(200, render.services_page(services))

    async def service(
        self,
        name: str,
        *,
        result: str = "",
        error: str | None = None,
        form: Mapping[str, str] | None = None,
        status: int = 200,
    ) -> ConsoleReply:
        svc = self.core.lookup_service(name)
        if svc is None:
            return _html(
                404, render.message_page("Not found", f"The requested service '{name}' does not exist")
            )
        pins = await self._pins(name)
        deployments = [
            {
                "id": d.id,
                "endpoint": redact_uri(d.uri),
                "latest": d.id == svc.deployment_id,
                "active": pins.get(d.id, (0, 0))[0],
                "total": pins.get(d.id, (0, 0))[1],
            }
            for d in await self.core.list_deployments()
            if d.id == svc.deployment_id or d.id in pins or any(s.name == name for s in d.services)
        ]
        handlers = [
            {
                "name": h.name,
                "ty": h.ty.value if h.ty is not None else "",
                "input_content_type": h.input_content_type,
                "input_json_schema": h.input_json_schema,
                "output_content_type": h.output_content_type,
                "output_json_schema": h.output_json_schema,
                "documentation": h.documentation,
            }
            for h in sorted(svc.handlers.values(), key=lambda h: h.name)
        ]
        info = {
            "name": svc.name,
            "ty": svc.ty.admin_name,
            "revision": svc.revision,
            "public": svc.public,
            "documentation": svc.documentation,
        }
        page = render.service_page(info, handlers, deployments, result=result, error=error, form=form)
        return _html(status, page)

    def openapi(self, name: str) -> ConsoleReply:
        from pyrestate.server import openapi

        svc = self.core.lookup_service(name)
        if svc is None:
            return _html(
                404, render.message_page("Not found", f"The requested service '{name}' does not exist")
            )
        doc = openapi.service_openapi(svc, self.ingress_endpoint or "http://localhost:8080")
        body = json.dumps(doc, indent=2, ensure_ascii=False).encode()
        return ConsoleReply(200, body, [("content-type", "application/json"), *_COMMON])

    async def invoke(self, name: str, form: Mapping[str, str]) -> ConsoleReply:
        svc = self.core.lookup_service(name)
        if svc is None:
            return _html(
                404, render.message_page("Not found", f"The requested service '{name}' does not exist")
            )
        handler = svc.handlers.get(form.get("handler", ""))
        if handler is None:
            return await self.service(name, error="Choose a handler of this service.", form=form, status=400)
        key: str | None = None
        if svc.ty is not ServiceType.SERVICE:
            key = form.get("key", "")
            if not key:
                return await self.service(name, error="A key is required.", form=form, status=400)
        text = form.get("body", "").strip()
        if text:
            try:
                json.loads(text)
            except ValueError as e:
                return await self.service(name, error=f"The body is not JSON: {e}", form=form, status=400)
        elif handler.input_required:
            return await self.service(name, error="This handler needs an input.", form=form, status=400)
        idem = form.get("idempotency_key", "").strip() or None
        invocation = IngressInvocation(
            target=InvocationTarget(name, handler.name, key),
            body=text.encode(),
            headers=(("content-type", "application/json"),) if text else (),
            idempotency_key=idem,
            user_supplied_idempotency_key=idem is not None,
        )
        try:
            receipt = await self.core.send(invocation)
        except (core_api.BadRequest, core_api.Conflict, core_api.NotFound, core_api.Unavailable) as e:
            return await self.service(name, error=f"The invocation was refused: {e}", form=form, status=400)
        inv_id = receipt.invocation_id
        if form.get("mode") == "send":
            return await self.service(name, result=render.invoke_result(inv_id, sent=True), form=form)
        try:
            answer = await asyncio.wait_for(self.core.attach(ById(inv_id)), CALL_WAIT_S)
        except TimeoutError:
            return await self.service(
                name, result=render.invoke_result(inv_id, sent=False, pending=True), form=form
            )
        except core_api.NotFound:
            return await self.service(name, error="The invocation is gone.", form=form, status=404)
        outcome = answer.outcome
        if isinstance(outcome, Success):
            html = render.invoke_result(inv_id, sent=False, output=outcome.value)
        else:
            html = render.invoke_result(inv_id, sent=False, failure=f"[{outcome.code}] {outcome.message}")
        return await self.service(name, result=html, form=form)

    async def deployments(
        self, query: Mapping[str, str], *, error: str | None = None, uri: str = ""
    ) -> ConsoleReply:
        pins = await self._pins()
        rows = [
            {
                "id": d.id,
                "endpoint": redact_uri(d.uri),
                "created_at": _ms_text(d.created_at_ms),
                "services": sorted(s.name for s in d.services),
                "sdk_version": d.sdk_version,
                "active": pins.get(d.id, (0, 0))[0],
                "total": pins.get(d.id, (0, 0))[1],
            }
            for d in sorted(await self.core.list_deployments(), key=lambda d: d.created_at_ms)
        ]
        flash = _DONE.get(query.get("done", ""))
        error = error or _FAILED.get(query.get("failed", ""))
        status = 400 if error and uri else 200
        return _html(status, render.deployments_page(rows, flash=flash, error=error, uri=uri))

    async def register(self, form: Mapping[str, str]) -> ConsoleReply:
        uri = form.get("uri", "").strip()
        if self._register is None:
            return await self.deployments({}, error="Registration is not available here.", uri=uri)
        if not uri:
            return await self.deployments({}, error="Enter the deployment's URI.", uri=" ")
        try:
            await self._register({"uri": uri, "force": form.get("force") == "true"})
        except Exception as e:  # the admin API's own refusals (AdminError, PlainError) carry `.message`
            message = getattr(e, "message", None) or str(e) or type(e).__name__
            return await self.deployments({}, error=f"Registration failed: {message}", uri=uri)
        return _redirect(f"{render.BASE}/deployments?done=registered")

    async def remove_deployment(self, dep_id: str) -> ConsoleReply:
        known = {d.id for d in await self.core.list_deployments()}
        if dep_id not in known:
            return _redirect(f"{render.BASE}/deployments?failed=nodeployment")
        # As `DELETE /deployments/{id}?force=true`: the only removal this server supports.
        await self.core.delete_deployment(dep_id)
        return _redirect(f"{render.BASE}/deployments?done=removed")

    # ------------------------------------------------------------------ state

    def _keyed(self, service: str) -> core_api.ServiceSchema | ConsoleReply:
        svc = self.core.lookup_service(service)
        if svc is None:
            return _html(
                404, render.message_page("Not found", f"The requested service '{service}' does not exist")
            )
        return svc

    async def keys(self, service: str, after: str | None) -> ConsoleReply:
        svc = self._keyed(service)
        if isinstance(svc, ConsoleReply):
            return svc
        since = f" AND service_key > {sql_str(after)}" if after else ""
        where = f"service_name = {sql_str(service)}{since}"
        rows = await self.query(
            f"SELECT DISTINCT service_key FROM (SELECT service_key FROM state WHERE {where} "
            f"UNION ALL SELECT service_key FROM sys_promise WHERE {where}) "
            f"ORDER BY service_key LIMIT {KEYS_PAGE + 1}"
        )
        keys = [str(r["service_key"]) for r in rows]
        next_after = keys[KEYS_PAGE - 1] if len(keys) > KEYS_PAGE else None
        return _html(200, render.keys_page(service, keys[:KEYS_PAGE], after=after, next_after=next_after))

    async def _whole_state(self, service: str, key: str) -> list[tuple[str, bytes]]:
        rows = await self.query(
            "SELECT key, value FROM state "
            f"WHERE service_name = {sql_str(service)} AND service_key = {sql_str(key)} "
            f"ORDER BY key LIMIT {MAX_EDIT_KEYS + 1}"
        )
        return [(str(r["key"]), bytes.fromhex(str(r.get("value") or ""))) for r in rows]

    async def state(
        self,
        service: str,
        key: str,
        query: Mapping[str, str],
        *,
        error: str | None = None,
        status: int = 200,
    ) -> ConsoleReply:
        svc = self._keyed(service)
        if isinstance(svc, ConsoleReply):
            return svc
        after = query.get("after")
        # One page at a time, from the key after the last one shown: an object with many keys must not make
        # the query sort (and the page show) all of its values.
        since = f" AND key > {sql_str(after)}" if after else ""
        where = f"service_name = {sql_str(service)} AND service_key = {sql_str(key)}"
        rows = await self.query(
            f"SELECT key, value FROM state WHERE {where}{since} ORDER BY key LIMIT {STATE_PAGE + 1}"
        )
        more = len(rows) > STATE_PAGE
        rows = rows[:STATE_PAGE]
        next_after = str(rows[-1]["key"]) if more and rows else None
        # The version covers the whole state (what an edit replaces), read as digests rather than values.
        digests = await self.query(
            f"SELECT key, md5(value) AS h FROM state WHERE {where} ORDER BY key LIMIT {MAX_EDIT_KEYS + 1}"
        )
        editable = svc.ty is not ServiceType.SERVICE and len(digests) <= MAX_EDIT_KEYS
        version = state_version([(str(r["key"]), str(r.get("h") or "").encode()) for r in digests])
        promises: list[dict[str, Any]] = []
        if svc.ty is ServiceType.WORKFLOW:
            promises = await self.query(
                "SELECT key, completed, completion_success_value, completion_failure FROM sys_promise "
                f"WHERE {where} ORDER BY key LIMIT {STATE_PAGE}"
            )
        page = render.state_page(
            service,
            key,
            rows,
            after=after,
            next_after=next_after,
            version=version,
            promises=promises,
            editable=editable,
            flash=_DONE.get(query.get("done", "")),
            error=error,
        )
        return _html(status, page)

    async def edit_state(self, service: str, key: str, form: Mapping[str, str]) -> ConsoleReply:
        svc = self._keyed(service)
        if isinstance(svc, ConsoleReply):
            return svc
        if svc.ty is ServiceType.SERVICE:
            return await self.state(service, key, {}, error="A service has no state.", status=400)
        name = form.get("name", "")
        if not name:
            return await self.state(service, key, {}, error="Name the state key.", status=400)
        current = await self._whole_state(service, key)
        if len(current) > MAX_EDIT_KEYS:
            return await self.state(service, key, {}, error="Too many keys to edit here.", status=400)
        digests = [(k, hashlib.md5(v).hexdigest().encode()) for k, v in current]
        if form.get("version", "") != state_version(digests):
            return await self.state(
                service,
                key,
                {},
                error="The state changed since the page was loaded; nothing was changed. Review and retry.",
                status=409,
            )
        new_state = dict(current)
        if form.get("op") == "delete":
            new_state.pop(name, None)
        else:
            try:
                new_state[name] = encode_value(form.get("value", ""), form.get("encoding", "json"))
            except ValueError as e:
                return await self.state(service, key, {}, error=str(e), status=400)
        # Same engine operation (and same whole-state semantics) as `POST /services/{name}/state`.
        await self.core.set_state(service, key, new_state)
        return _redirect(f"{render.state_href(service, key)}?done=state")

    # ------------------------------------------------------------------ SQL

    async def _tables(self) -> dict[str, list[tuple[str, str]]]:
        try:
            rows = await self.query(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
            )
        except SqlFailed:
            return {}
        tables: dict[str, list[tuple[str, str]]] = {}
        for r in rows:
            tables.setdefault(str(r["table_name"]), []).append((str(r["column_name"]), str(r["data_type"])))
        return tables

    async def sql(self, sql: str, *, empty_ok: bool = False) -> ConsoleReply:
        tables = await self._tables()
        if not sql.strip():
            if empty_ok:
                return _html(200, render.sql_page("", tables=tables))
            return _html(400, render.sql_page(sql, tables=tables, error="Enter a query."))
        try:
            rows = await self.query(sql)
        except SqlFailed as e:
            return _html(400, render.sql_page(sql, tables=tables, error=str(e)))
        return _html(200, render.sql_page(sql, rows, tables=tables, limit=SQL_ROW_LIMIT))

    async def download(self, sql: str, fmt: str | None) -> ConsoleReply:
        if fmt not in ("csv", "json") or not sql.strip():
            return _html(
                400, render.message_page("Bad request", "Give a query and format=csv or format=json.")
            )
        try:
            rows = (await self.query(sql))[:SQL_DOWNLOAD_LIMIT]
        except SqlFailed as e:
            return _html(400, render.message_page("Query failed", str(e)))
        if fmt == "json":
            body = json.dumps({"rows": rows}, ensure_ascii=False).encode()
            ctype = "application/json"
        else:
            columns: list[str] = []
            for r in rows:
                columns.extend(c for c in r if c not in columns)
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(columns)
            for r in rows:
                writer.writerow(
                    [
                        json.dumps(v) if isinstance(v, list | dict) else "" if v is None else v
                        for v in (r.get(c) for c in columns)
                    ]
                )
            body = out.getvalue().encode()
            ctype = "text/csv; charset=utf-8"
        disposition = f'attachment; filename="query.{fmt}"'
        return ConsoleReply(
            200, body, [("content-type", ctype), ("content-disposition", disposition), *_COMMON]
        )


async def _form(receive: Receive, headers: Headers) -> tuple[dict[str, str], ConsoleReply | None]:
    try:
        raw = await read_body(receive, headers, MAX_FORM_BODY)
    except BodyTooLarge:
        return {}, _html(413, render.message_page("Too large", "The form is too large."))
    try:
        return dict(parse_qsl(raw.decode(), keep_blank_values=True)), None
    except UnicodeDecodeError:
        return {}, _html(400, render.message_page("Bad request", "The form is not UTF-8."))


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
    *,
    register: RegisterFn | None = None,
    ingress_endpoint: str | None = None,
) -> ConsoleReply:
    console = Console(core, sql, origins, register=register, ingress_endpoint=ingress_endpoint)
    return await console.serve(method, segments, query, receive, headers)
