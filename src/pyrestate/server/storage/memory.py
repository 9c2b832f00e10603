"""In-memory backend: the reference implementation of the key/value layer, for tests and the contract
suite. Commits are atomic (applied under no await) but obviously not durable."""

from __future__ import annotations

from pyrestate.server.storage.api import TABLES, Key, Transaction, WriteOp
from pyrestate.server.storage.txn import BufferedTransaction


class _MemoryReader:
    def __init__(self) -> None:
        self.tables: dict[str, dict[Key, bytes]] = {name: {} for name in TABLES}

    def get(self, table: str, key: Key) -> bytes | None:
        return self.tables[table].get(key)

    def scan(self, table: str, prefix: Key) -> list[tuple[Key, bytes]]:
        n = len(prefix)
        return sorted((k, v) for k, v in self.tables[table].items() if k[:n] == prefix)

    def scan_between(self, table: str, after: int, until: int, limit: int) -> list[tuple[Key, bytes]]:
        rows = sorted((k, v) for k, v in self.tables[table].items() if after < k[0] <= until)  # type: ignore[operator]
        return rows[:limit]

    def apply(self, ops: list[WriteOp]) -> None:
        for op, table, key, value in ops:
            rows = self.tables[table]
            if op == "put":
                assert value is not None
                rows[key] = value
            elif op == "del":
                rows.pop(key, None)
            else:
                n = len(key)
                for k in [k for k in rows if k[:n] == key]:
                    del rows[k]


class MemoryStorage:
    def __init__(self) -> None:
        self._data = _MemoryReader()
        self.commits = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def begin(self) -> Transaction:
        return BufferedTransaction(self._data)

    def reader(self) -> Transaction:
        return BufferedTransaction(self._data)

    def commit_now(self, txn: Transaction) -> None:
        self._data.apply(list(txn.writes))
        self.commits += 1

    async def commit(self, txn: Transaction) -> None:
        self.commit_now(txn)
