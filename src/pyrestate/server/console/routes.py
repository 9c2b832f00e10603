"""Routing of the operator console (`/ui/…` on the admin API): each method and path goes to the handler of its
page family (`invocation_handlers`, `service_handlers`, `sql_handlers`). Reads go through the `/query`
machinery, actions through the same engine operations as the admin JSON API.

Every form that changes something is a POST, and passes `http.cross_site` first. Reads (including SQL, which
the query engine keeps read-only and bounded) are GETs, so that their URLs can be shared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyrestate.server.asgi import Headers, Receive
from pyrestate.server.console import assets
from pyrestate.server.console.base import RegisterFn, SqlFailed, SqlFn
from pyrestate.server.console.http import (
    COMMON_HEADERS,
    ConsoleReply,
    cross_site,
    forbidden,
    html_reply,
    not_allowed,
    read_form,
)
from pyrestate.server.console.invocation_handlers import COMMANDS, InvocationHandlers
from pyrestate.server.console.markup import message_page
from pyrestate.server.console.service_handlers import ServiceHandlers
from pyrestate.server.console.sql_handlers import SqlHandlers
from pyrestate.server.core_api import ServerCore

_STATIC = {
    "console.css": ("text/css; charset=utf-8", assets.CSS),
    "console.js": ("text/javascript; charset=utf-8", assets.JS),
}


class Console(InvocationHandlers, ServiceHandlers, SqlHandlers):
    """Every console page: the request's method and path segments to the handler that answers them."""

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
            return html_reply(503, message_page("Query failed", str(e)))

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
                return ConsoleReply(200, text.encode(), [("content-type", ctype), *COMMON_HEADERS[1:]])
            case ["invocations"]:
                return self._only(method, "GET") or await self.invocations(query)
            case ["invocations", inv_id]:
                return self._only(method, "GET") or await self.invocation(inv_id, query, live)
            case ["invocations", inv_id, action] if action in COMMANDS:
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
                form, bad = await read_form(receive, headers)
                return bad or await self.invoke(name, form)
            case ["deployments"]:
                if method == "GET":
                    return await self.deployments(query)
                if denied := self._post_only(method, headers, "GET, POST"):
                    return denied
                form, bad = await read_form(receive, headers)
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
                form, bad = await read_form(receive, headers)
                return bad or await self.edit_state(service, key, form)
            case ["sql"]:
                if method == "GET":
                    return await self.sql(query.get("q", ""), empty_ok=True)
                if denied := self._post_only(method, headers, "GET, POST"):
                    return denied
                form, bad = await read_form(receive, headers)
                return bad or await self.sql(form.get("query", form.get("q", "")))
            case ["sql", "download"]:
                return self._only(method, "GET") or await self.download(
                    query.get("q", ""), query.get("format")
                )
            case _:
                return html_reply(404, message_page("Not found", "No such console page."))

    @staticmethod
    def _only(method: str, allowed: str) -> ConsoleReply | None:
        return None if method == allowed else not_allowed(allowed)

    def _post_only(self, method: str, headers: Headers, allow: str = "POST") -> ConsoleReply | None:
        if method != "POST":
            return not_allowed(allow)
        if cross_site(headers, self.origins):
            return forbidden()
        return None


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
