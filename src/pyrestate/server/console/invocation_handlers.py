"""Handlers of the invocation pages: the overview, the list, one invocation, and the actions on it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from pyrestate.server import core_api
from pyrestate.server.console.base import ConsoleBase, sql_str, sql_time
from pyrestate.server.console.http import DONE, FAILED, ConsoleReply, html_reply, redirect
from pyrestate.server.console.invocation_pages import (
    ACTIONS,
    FILTERS,
    invocation_page,
    invocations_page,
    overview_page,
)
from pyrestate.server.console.markup import invocation_href, message_page
from pyrestate.server.core_api import InvocationCommand

LIST_PAGE = 50
JOURNAL_LIMIT = 1000
COMMANDS: dict[str, InvocationCommand] = {c.value: c for c in InvocationCommand if c.value in ACTIONS}


class InvocationHandlers(ConsoleBase):
    """The overview, invocation list and detail pages, and cancel/kill/purge/pause/resume."""

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
        return html_reply(
            200,
            overview_page(
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
        filters = {k: query.get(k, "").strip() for k in FILTERS}
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
                ts = sql_time(filters[name])
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
            ts = sql_time(at)
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
        return html_reply(
            200,
            invocations_page(
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
            return html_reply(
                404, message_page("Not found", f"The requested invocation '{inv_id}' does not exist")
            )
        journal = await self.query(
            "SELECT index, entry_type, name, completed, invoked_id, invoked_target, sleep_wakeup_at, "
            f"promise_name, appended_at, entry_json FROM sys_journal WHERE id = {sql_str(inv_id)} "
            f"ORDER BY index LIMIT {JOURNAL_LIMIT}"
        )
        # Only fixed texts: a crafted link cannot put words of its own on the page.
        flash = DONE.get(query.get("done", ""))
        error = FAILED.get(query.get("failed", ""))
        return html_reply(200, invocation_page(found[0], journal, flash=flash, error=error, live=live))

    async def act(self, inv_id: str, action: str) -> ConsoleReply:
        back = invocation_href(inv_id)
        try:
            await self.core.invocation_command(inv_id, COMMANDS[action], deployment_id=None)
        except core_api.NotFound:
            return redirect(f"{back}?{urlencode({'failed': 'notfound'})}")
        except core_api.Conflict:
            return redirect(f"{back}?{urlencode({'failed': 'conflict'})}")
        except core_api.BadRequest:
            return redirect(f"{back}?{urlencode({'failed': 'badrequest'})}")
        except core_api.Unavailable:
            return redirect(f"{back}?{urlencode({'failed': 'unavailable'})}")
        return redirect(f"{back}?{urlencode({'done': action})}")
