"""Rendering helpers for the CLI: rich tables for people, JSON for scripts, and the journal timeline."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

# The decoders live in server.values (the console uses them too); the CLI's commands import them from here.
from pyrestate.server.values import entry_state_key
from pyrestate.server.values import entry_value as entry_value
from pyrestate.server.values import entry_value_json as entry_value_json
from pyrestate.server.values import payload_json as payload_json
from pyrestate.server.values import payload_text as payload_text

# Piped output keeps whole ids and targets instead of squeezing tables into 80 columns.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)


def print_json(value: Any) -> None:
    # Plain print: rich would wrap long lines and colour the output, which breaks `| jq`.
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None) -> Table:
    t = Table(*columns, title=title, title_justify="left", header_style="bold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def rows_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """A table of query rows; the JSON answer omits null columns, so the header is the union of keys."""
    columns: list[str] = []
    for row in rows:
        for k in row:
            if k not in columns:
                columns.append(k)
    return table([c.upper() for c in columns], ([row.get(c) for c in columns] for row in rows))


def sql_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def status_text(status: str | None, completion_result: str | None = None) -> Text:
    status = status or "?"
    label = f"completed ({completion_result})" if status == "completed" and completion_result else status
    style = {
        "running": "green",
        "suspended": "cyan",
        "backing-off": "yellow",
        "paused": "yellow",
        "pending": "blue",
        "scheduled": "blue",
        "ready": "blue",
        "completed": "red" if completion_result == "failure" else "dim",
    }.get(status, "")
    return Text(label, style=style)


def _entry_detail(e: Mapping[str, Any]) -> str:
    parts = []
    if e.get("name"):
        parts.append(f"[{e['name']}]")
    if e.get("invoked_target"):
        parts.append(f"→ {e['invoked_target']}")
    if e.get("invoked_id"):
        parts.append(str(e["invoked_id"]))
    if e.get("sleep_wakeup_at"):
        parts.append(f"until {e['sleep_wakeup_at']}")
    if e.get("promise_name"):
        parts.append(f"promise {e['promise_name']}")
    key = entry_state_key(e.get("entry_json"))
    if key is not None:
        parts.append(f"key {key}")
    if e.get("completed") is False:
        parts.append("(waiting)")
    value = entry_value(e.get("entry_json"))
    if value is not None:
        parts.append(f"= {_shorten(value)}")
    return " ".join(parts)


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def timeline(inv: Mapping[str, Any], journal: Sequence[Mapping[str, Any]]) -> Tree:
    """The journal as a timeline: one line per entry, oldest first, ending in the invocation's status."""
    caller = inv.get("invoked_by_target") or inv.get("invoked_by") or "ingress"
    root = Tree(Text.assemble((f"[{caller}] ", "dim"), (str(inv.get("target", "?")), "bold")))
    for e in sorted(journal, key=lambda e: int(e.get("index", 0))):
        line = Text()
        line.append(f"#{e.get('index')} ", style="bold")
        if e.get("appended_at"):
            line.append(f"[{e['appended_at']}] ", style="dim")
        line.append(str(e.get("entry_type", "?")))
        detail = _entry_detail(e)
        if detail:
            line.append(" " + detail)
        root.add(line)
    end = Text("▶ ")
    end.append_text(status_text(inv.get("status"), inv.get("completion_result")))
    if inv.get("completion_failure"):
        end.append(f": {inv['completion_failure']}", style="red")
    if inv.get("retry_count"):
        end.append(f"  (retried {inv['retry_count']} times)")
    if inv.get("next_retry_at"):
        end.append(f", next retry at {inv['next_retry_at']}")
    root.add(end)
    return root
