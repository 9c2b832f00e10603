"""Handlers of the SQL page: running a read-only query, and downloading its rows as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json

from pyrestate.server.console.base import ConsoleBase, SqlFailed
from pyrestate.server.console.http import COMMON_HEADERS, ConsoleReply, html_reply
from pyrestate.server.console.markup import message_page
from pyrestate.server.console.sql_pages import sql_page

SQL_ROW_LIMIT = 500
SQL_DOWNLOAD_LIMIT = 100_000


class SqlHandlers(ConsoleBase):
    """The SQL page and its downloads."""

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
                return html_reply(200, sql_page("", tables=tables))
            return html_reply(400, sql_page(sql, tables=tables, error="Enter a query."))
        try:
            rows = await self.query(sql)
        except SqlFailed as e:
            return html_reply(400, sql_page(sql, tables=tables, error=str(e)))
        return html_reply(200, sql_page(sql, rows, tables=tables, limit=SQL_ROW_LIMIT))

    async def download(self, sql: str, fmt: str | None) -> ConsoleReply:
        if fmt not in ("csv", "json") or not sql.strip():
            return html_reply(
                400, message_page("Bad request", "Give a query and format=csv or format=json.")
            )
        try:
            rows = (await self.query(sql))[:SQL_DOWNLOAD_LIMIT]
        except SqlFailed as e:
            return html_reply(400, message_page("Query failed", str(e)))
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
            200, body, [("content-type", ctype), ("content-disposition", disposition), *COMMON_HEADERS]
        )
