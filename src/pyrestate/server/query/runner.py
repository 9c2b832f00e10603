"""Run one read-only SQL query with DataFusion over a storage snapshot, within time, row and memory bounds.

The storage read happens in the server process (on a worker thread); DataFusion executes in a separate
worker process (`pyrestate.server.query.worker`), because a running DataFusion plan cannot be interrupted
from Python: a query that overruns its time is ended by killing its process, so a runaway query costs
neither the event loop nor a thread nor CPU after its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import IO, TYPE_CHECKING

import pyarrow as pa

from pyrestate.server.core_api import QuerySnapshot
from pyrestate.server.query.fastpath import match_status_count
from pyrestate.server.query.schema import SYS_INVOCATION_VIEW, TABLE_SOURCES, table_names, table_schema
from pyrestate.server.query.tables import build_tables

if TYPE_CHECKING:
    from datafusion import SessionContext, SQLOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QueryLimits:
    timeout_s: float = 30.0
    max_rows: int = 100_000
    max_result_bytes: int = 64 * 1024 * 1024
    # Per query: DataFusion's pool (sorts/joins/aggregations fail past it) and, as a backstop for what the
    # pool does not track (e.g. `repeat`), the worker's data segment may grow by this much at most.
    memory_bytes: int = 512 * 1024 * 1024
    concurrency: int = 2  # queries executing at once, one worker process each
    # Checked before planning: a huge or deeply built expression overflows the planner's stack.
    max_sql_bytes: int = 64 * 1024
    max_operators: int = 1000
    max_nesting: int = 64


class QueryError(Exception):
    """An answer `{"message": …}` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


PREFIX = "Datafusion error: "
_LITERALS = re.compile(r"'(?:[^']|'')*'")
_WORDS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
# Statements that would change something: rejected before planning, so the answer does not depend on
# whether the statement happens to plan.
_WRITES = frozenset(
    ["INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "DROP", "ALTER", "TRUNCATE", "COPY", "SET", "RESET"]
)


def referenced_tables(sql: str) -> set[str]:
    """Storage-backed tables a query may read: every known table name that appears as a word outside
    string literals (a superset is harmless, it only costs a read)."""
    words = {w.lower() for w in _WORDS.findall(_LITERALS.sub("''", _COMMENTS.sub(" ", sql)))}
    needed: set[str] = set()
    for name, sources in TABLE_SOURCES.items():
        if name in words:
            needed.update(sources)
    return needed


_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_OPERATORS = re.compile(r"\|\||<=|>=|<>|!=|[-+*/%<>=]|\b(?:AND|OR)\b", re.I)


def check_shape(sql: str, limits: QueryLimits) -> None:
    """Refuses, before planning, statements whose size or expression depth could exhaust the planner: a
    left-deep chain of thousands of operators takes minutes to plan and overflows its stack."""
    size = len(sql.encode("utf-8", "surrogatepass"))
    if size > limits.max_sql_bytes:
        raise QueryError(
            400, f"{PREFIX}SQL error: the statement is {size} bytes long, the limit is {limits.max_sql_bytes}"
        )
    bare = _QUOTED.sub("''", _COMMENTS.sub(" ", sql))
    operators = len(_OPERATORS.findall(bare))
    if operators > limits.max_operators:
        raise QueryError(
            400,
            f"{PREFIX}SQL error: the statement has {operators} operators, "
            f"the limit is {limits.max_operators}",
        )
    depth = deepest = 0
    for ch in bare:
        if ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    if deepest > limits.max_nesting:
        raise QueryError(
            400,
            f"{PREFIX}SQL error: parentheses nest {deepest} deep, the limit is {limits.max_nesting}",
        )


def check_read_only(sql: str) -> None:
    words = _WORDS.findall(_COMMENTS.sub(" ", sql))
    if words and words[0].upper() in _WRITES:
        found = words[0].upper()
        raise QueryError(
            400, f"{PREFIX}Error during planning: only read-only queries are allowed, found {found}"
        )


def status_count(snapshot: QuerySnapshot, sql: str) -> pa.Table | None:
    """Blocking: the answer of `fastpath`'s status count when `sql` is one and the snapshot can count
    (closes the snapshot then), else None."""
    counter: Callable[[bool, str, int | None], pa.Table | None] | None = getattr(
        snapshot, "count_invocation_statuses", None
    )
    found = match_status_count(sql) if counter is not None else None
    if counter is None or found is None:
        return None
    column, completed, limit = found
    try:
        counted = counter(completed, column, limit)
    except BaseException:
        snapshot.close()
        raise
    if counted is not None:
        snapshot.close()
    return counted


def load_tables(snapshot: QuerySnapshot, sql: str) -> dict[str, pa.Table]:
    """Blocking storage read of the tables `sql` refers to; closes the snapshot."""
    try:
        return build_tables(snapshot, referenced_tables(sql))
    finally:
        snapshot.close()


def _classify(error: Exception) -> QueryError:
    text = str(error).removeprefix("DataFusion error: ")
    if text.startswith("Resources exhausted"):
        return QueryError(503, PREFIX + text)
    bad_request = text.startswith("SQL error:") or any(
        s in text for s in ("DDL not supported", "DML not supported", "Statement not supported")
    )
    return QueryError(400 if bad_request else 500, PREFIX + text)


_SESSION_LOCK = threading.Lock()


@functools.cache
def _empty_batch(name: str) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=table_schema(name))


@functools.cache
def _session(memory_bytes: int) -> SessionContext:
    """One DataFusion session per memory bound, reused by every query of this process (one at a time):
    queries cannot change it (no DDL, DML or statements are allowed). Each query registers its tables and
    the view, and removes them when done."""
    from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext

    config = (
        SessionConfig()
        .with_information_schema(True)
        .with_default_catalog_and_schema("restate", "public")
        .with_target_partitions(2)
        .with_batch_size(1024)
    )
    runtime = RuntimeEnvBuilder().with_greedy_memory_pool(memory_bytes).with_disk_manager_disabled()
    return SessionContext(config, runtime)


# What each session of this process (one per memory bound) holds registered after its last query, when
# that query's tables were kept (`execute` with `keep`): table name -> the content digest it was registered
# with (None: registered empty). A session without an entry holds nothing.
_kept: dict[int, dict[str, str | None]] = {}
_VIEW_SOURCES = TABLE_SOURCES["sys_invocation"]


def _register(ctx: SessionContext, name: str, table: pa.Table | None) -> None:
    batches = table.to_batches() if table is not None and table.num_rows else []
    ctx.register_record_batches(name, [batches or [_empty_batch(name)]])


def _deregister_all(ctx: SessionContext) -> None:
    for name in (*table_names(), "sys_invocation"):
        ctx.deregister_table(name)


def execute(
    tables: dict[str, pa.Table],
    sql: str,
    limits: QueryLimits,
    digests: dict[str, str] | None = None,
    keep: bool = False,
) -> pa.Table:
    """Blocking DataFusion execution over the given tables (every other table registered empty).

    With `digests` (a content digest per table of `tables`) and `keep`, the tables stay registered after
    the query, and the next query re-registers only the tables whose digest changed (and the view only when
    one of its tables did): a burst of queries over unchanged state (the official CLI sends three for one
    `invocations list`) skips re-registering the tables and re-planning the view. Otherwise the tables are
    removed after the query, so they are not kept alive until the next one."""
    from datafusion import SQLOptions

    check_read_only(sql)
    check_shape(sql, limits)
    deadline = time.monotonic() + limits.timeout_s
    options = SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)
    with _SESSION_LOCK:
        ctx = _session(limits.memory_bytes)
        if digests is not None and not tables.keys() <= digests.keys():
            digests = None  # a table without a digest cannot be recognised next time
        wanted = {name: digests.get(name) if digests and name in tables else None for name in table_names()}
        # Nothing counts as kept until this query's tables are in place.
        registered = _kept.pop(limits.memory_bytes, None)
        try:
            if digests is None or registered is None:
                if registered is not None:
                    _deregister_all(ctx)
                for name in table_names():
                    _register(ctx, name, tables.get(name))
                ctx.sql(SYS_INVOCATION_VIEW)  # a view holds the tables it was made over
            else:
                view_stale = False
                for name in table_names():
                    if registered.get(name) != wanted[name]:
                        ctx.deregister_table(name)
                        _register(ctx, name, tables.get(name))
                        view_stale = view_stale or name in _VIEW_SOURCES
                if view_stale:
                    ctx.deregister_table("sys_invocation")
                    ctx.sql(SYS_INVOCATION_VIEW)
        except BaseException:
            _deregister_all(ctx)
            raise
        try:
            return _collect(ctx, sql, options, limits, deadline)
        finally:
            if keep and digests is not None:
                _kept[limits.memory_bytes] = wanted
            else:
                _deregister_all(ctx)


def kept_digests(limits: QueryLimits) -> dict[str, str | None] | None:
    """What the last `execute` under `limits` left registered (table name -> digest, None: empty), or None."""
    return _kept.get(limits.memory_bytes)


def _collect(
    ctx: SessionContext, sql: str, options: SQLOptions, limits: QueryLimits, deadline: float
) -> pa.Table:
    try:
        df = ctx.sql_with_options(sql, options)
        schema = df.schema()
        out: list[pa.RecordBatch] = []
        rows = size = 0
        for batch in df.execute_stream():
            rb = batch.to_pyarrow()
            rows += rb.num_rows
            size += rb.nbytes
            if rows > limits.max_rows or size > limits.max_result_bytes:
                raise QueryError(
                    400,
                    f"{PREFIX}Resources exhausted: the result exceeds {limits.max_rows} rows or "
                    f"{limits.max_result_bytes} bytes; narrow the query or add a LIMIT",
                )
            if time.monotonic() > deadline:
                raise QueryError(500, _timeout_message(limits))
            out.append(rb)
    except QueryError:
        raise
    except (MemoryError, pa.ArrowMemoryError):
        raise QueryError(503, memory_message(limits)) from None
    except Exception as e:
        raise _classify(e) from None
    # The batches' nullability may differ from the planned schema (e.g. `repeat`): theirs is what was built.
    return pa.Table.from_batches(out, schema=out[0].schema if out else schema)


def memory_message(limits: QueryLimits) -> str:
    return (
        f"{PREFIX}Resources exhausted: the query needs more than its {limits.memory_bytes} bytes of memory; "
        "narrow the query or add a LIMIT"
    )


def run_query(snapshot: QuerySnapshot, sql: str, limits: QueryLimits | None = None) -> pa.Table:
    """Blocking, in this process (no kill on overrun): for tests and tools."""
    limits = limits or QueryLimits()
    check_read_only(sql)
    check_shape(sql, limits)
    counted = status_count(snapshot, sql)
    if counted is not None:
        return counted
    return execute(load_tables(snapshot, sql), sql, limits)


def _timeout_message(limits: QueryLimits) -> str:
    return f"{PREFIX}Execution error: the query did not finish within {limits.timeout_s}s"


# ------------------------------------------------------------------------------------------ worker IPC

_LEN = struct.Struct(">I")


def write_frame(out: IO[bytes], payload: bytes) -> None:
    out.write(_LEN.pack(len(payload)))
    out.write(payload)


def read_frame(inp: IO[bytes]) -> bytes | None:
    head = inp.read(_LEN.size)
    if len(head) < _LEN.size:
        return None
    (n,) = _LEN.unpack(head)
    data = inp.read(n)
    if len(data) < n:
        return None
    return data


def table_to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def table_from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# The last table sent under each name and its digest: a table object seen again (`tables` hands out the same
# sys_invocation_status table while the statuses do not change) is neither serialised nor hashed again.
_DIGESTS: dict[str, tuple[pa.Table, str]] = {}
_DIGEST_MEMO_BYTES = 32 * 1024 * 1024


class WorkerOutOfMemory(EOFError):
    """The worker died on an allocation past its memory cap."""


class _Worker:
    def __init__(self) -> None:
        # DataFusion's allocator (mimalloc) otherwise reserves 2 GiB up front, memory RLIMIT_DATA cannot tell
        # from what a query uses; without the reserve an allocation past the cap aborts cleanly.
        env = {**os.environ, "MIMALLOC_ARENA_RESERVE": "0", "RUST_BACKTRACE": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyrestate.server.query.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.retiring = False  # the worker said it exits after its answer
        self.cached: dict[str, str] = {}  # tables the worker holds from its last query: name -> digest
        self._stderr_tail = b""
        self._stderr_done = threading.Event()
        threading.Thread(target=self._relay_stderr, name="query-worker-stderr", daemon=True).start()

    def _relay_stderr(self) -> None:
        """Passes the worker's stderr on, keeping its end to tell why the worker died."""
        err = self.proc.stderr
        assert err is not None
        for line in iter(err.readline, b""):
            self._stderr_tail = (self._stderr_tail + line)[-4096:]
            with contextlib.suppress(Exception):
                sys.stderr.buffer.write(line)
                sys.stderr.buffer.flush()
        self._stderr_done.set()

    def _died(self) -> EOFError:
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=2)
        self._stderr_done.wait(1.0)  # the relay reaches EOF just after the process is gone
        # Allocation failures abort (SIGABRT, "memory allocation of N bytes failed"); the kernel's OOM killer
        # sends SIGKILL.
        if b"memory allocation of" in self._stderr_tail or self.proc.returncode in (-6, -9):
            return WorkerOutOfMemory()
        return EOFError()

    def request(self, sql: str, limits: QueryLimits, tables: dict[str, pa.Table]) -> pa.Table:
        """Blocking round trip. Raises QueryError; EOFError when the process died (killed on timeout).

        A table the worker still holds from its last query, with the same content (digest of its Arrow IPC
        form), is not sent again."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        frames: dict[str, bytes] = {}
        digests: dict[str, str] = {}
        for name, table in tables.items():
            known = _DIGESTS.get(name)
            if known is not None and known[0] is table:  # e.g. the unchanged sys_invocation_status table
                digests[name] = known[1]
                continue
            frames[name] = table_to_ipc(table)
            digests[name] = digest(frames[name])
            if table.nbytes <= _DIGEST_MEMO_BYTES:
                _DIGESTS[name] = (table, digests[name])
            else:
                _DIGESTS.pop(name, None)
        send = [name for name, d in digests.items() if self.cached.get(name) != d]
        for name in send:
            if name not in frames:
                frames[name] = table_to_ipc(tables[name])
        self.cached = {}  # unknown until the worker answers
        try:
            head = {"sql": sql, "limits": asdict(limits), "tables": digests, "send": send}
            write_frame(stdin, json.dumps(head).encode())
            for name in send:
                write_frame(stdin, frames[name])
            stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None
        reply = read_frame(stdout)
        if reply is None:
            raise self._died()
        answer = json.loads(reply)
        self.retiring = bool(answer.get("retire"))
        self.cached = answer.get("cached") or {}
        if not answer["ok"]:
            raise QueryError(answer["status"], answer["message"])
        body = read_frame(stdout)
        if body is None:
            raise self._died()
        return table_from_ipc(body)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()


class QueryRunner:
    """Runs queries in a small pool of worker processes, at most `limits.concurrency` at once; a query
    past its deadline is answered with an error and its worker is killed (and replaced on demand)."""

    def __init__(self, limits: QueryLimits | None = None) -> None:
        self.limits = limits or QueryLimits()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                w = self._idle.pop()
                if w.alive:
                    return w
                self._all.discard(w)
            w = _Worker()
            self._all.add(w)
            return w

    def prewarm(self) -> None:
        """Blocking: have one idle worker started (it loads DataFusion while nobody waits)."""
        w = self._take()
        try:
            w.request("SELECT 1", self.limits, {})
        except Exception:  # the first real query starts a new worker and reports what is wrong
            log.warning("could not start a query worker ahead of time", exc_info=True)
            self._discard(w)
            return
        self._give_back(w)

    def _give_back(self, w: _Worker) -> None:
        with self._lock:
            if self._closed or w.retiring or not w.alive:
                self._all.discard(w)
                w.kill()
            else:
                self._idle.append(w)

    def _discard(self, w: _Worker) -> None:
        with self._lock:
            self._all.discard(w)
        w.kill()

    def _prepare(self, snapshot: QuerySnapshot, sql: str) -> pa.Table | tuple[dict[str, pa.Table], _Worker]:
        """Blocking, in one thread hop: the counted answer, or the query's tables and an idle worker."""
        counted = status_count(snapshot, sql)
        if counted is not None:
            return counted
        return load_tables(snapshot, sql), self._take()

    async def run(self, snapshot: QuerySnapshot, sql: str) -> pa.Table:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limits.concurrency)
        try:
            check_read_only(sql)
            check_shape(sql, self.limits)
        except QueryError:
            snapshot.close()
            raise
        deadline = time.monotonic() + self.limits.timeout_s
        async with self._slots:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                snapshot.close()
                raise QueryError(500, _timeout_message(self.limits))
            prepared = await asyncio.to_thread(self._prepare, snapshot, sql)
            if isinstance(prepared, pa.Table):
                return prepared
            tables, worker = prepared
            limits = QueryLimits(
                **{**asdict(self.limits), "timeout_s": max(deadline - time.monotonic(), 0.001)}
            )
            call = asyncio.ensure_future(asyncio.to_thread(worker.request, sql, limits, tables))
            try:
                table = await asyncio.wait_for(asyncio.shield(call), max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                self._discard(worker)  # unblocks the reading thread with EOF
                with contextlib.suppress(BaseException):
                    await call
                raise QueryError(500, _timeout_message(self.limits)) from None
            except WorkerOutOfMemory:
                self._discard(worker)
                raise QueryError(503, memory_message(limits)) from None
            except EOFError:
                self._discard(worker)
                raise QueryError(
                    500, f"{PREFIX}Execution error: the query worker ended unexpectedly"
                ) from None
            except QueryError:
                self._give_back(worker)
                raise
            except BaseException:
                self._discard(worker)
                raise
            self._give_back(worker)
            return table

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all, self._idle = list(self._all), set(), []
        for w in workers:
            w.kill()
