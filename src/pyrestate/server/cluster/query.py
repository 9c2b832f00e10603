"""`/query` over several workers: every worker's database read as one snapshot (`core_api.QuerySnapshot`).

Each file is read on its own read transaction, so the union is consistent per partition range, not across
ranges (a message between workers may be seen in the sender's outbox and at the receiver alike). The
schema tables are identical in every file: they are read from the first one only."""

from __future__ import annotations

import time
from pathlib import Path

from pyrestate.server.query.source import Rows, SqliteSnapshot

SHARED_TABLES = frozenset({"deployments", "services", "limit_rules"})


class UnionSnapshot:
    def __init__(self, paths: list[Path], *, now_ms: int | None = None) -> None:
        self.now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        self.in_flight: frozenset[str] | None = None
        self._parts = [SqliteSnapshot(p, now_ms=self.now_ms) for p in paths if Path(p).exists()]

    def scan(self, table: str) -> Rows:
        if table in SHARED_TABLES or len(self._parts) == 1:
            return self._parts[0].scan(table) if self._parts else []
        rows: Rows = []
        for part in self._parts:
            rows.extend(part.scan(table))
        rows.sort(key=lambda r: r[0])
        return rows

    def close(self) -> None:
        for part in self._parts:
            part.close()
