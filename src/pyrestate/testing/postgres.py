"""A throwaway PostgreSQL server for tests: `initdb` into a temporary directory, a free port on 127.0.0.1,
the unix socket in that directory, trust authentication. Runs as the `postgres` user when the tests run as
root (PostgreSQL refuses root). Needs the server binaries (Debian: `apt-get install postgresql`)."""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pyrestate.testing.process import free_port

USER = "pyrestate"


def find_postgres_bin() -> Path | None:
    """$PYRESTATE_PG_BIN, else the newest /usr/lib/postgresql/<n>/bin (Debian), else `initdb` on PATH."""
    explicit = os.environ.get("PYRESTATE_PG_BIN")
    if explicit:
        return Path(explicit) if (Path(explicit) / "initdb").exists() else None
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for d in reversed(versions):
        if (d / "initdb").exists():
            return d
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_postgres_user() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root needs a 'postgres' user to run PostgreSQL") from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


class PostgresServer:
    """One PostgreSQL cluster. `fsync=False` trades durability for speed (tests that never crash the
    machine); keep it on to measure commit latency."""

    def __init__(self, *, fsync: bool = True, settings: Sequence[str] = ()) -> None:
        bindir = find_postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (set PYRESTATE_PG_BIN)")
        self.bindir = bindir
        self.fsync = fsync
        self.settings = tuple(settings)
        self.work = Path(tempfile.mkdtemp(prefix="pyrestate-pg-"))
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)

    @property
    def pid(self) -> int | None:
        """The postmaster's (its backends are its children)."""
        return None if self._proc is None else self._proc.pid

    @property
    def socket_dir(self) -> Path:
        return self.work

    def url(self, dbname: str = "postgres", *, tcp: bool = True, **params: str) -> str:
        """Connection URL over TCP (127.0.0.1) or the unix socket; extra libpq parameters as keywords."""
        query = {} if tcp else {"host": str(self.socket_dir), "port": str(self.port)}
        query.update(params)
        host = f"127.0.0.1:{self.port}" if tcp else ""
        qs = "&".join(f"{k}={_quote(v)}" for k, v in query.items())
        return f"postgresql://{USER}@{host}/{dbname}" + (f"?{qs}" if qs else "")

    def start(self, timeout: float = 30.0) -> None:
        run_as = _as_postgres_user()
        if run_as:
            os.chown(self.work, run_as["user"], run_as["group"])
        data = self.work / "data"
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
            **run_as,
        )
        args = [
            str(self.bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"fsync={'on' if self.fsync else 'off'}",
            "-c",
            "max_connections=200",
        ]
        for s in self.settings:
            args += ["-c", s]
        log = (self.work / "postgres.log").open("wb")
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, **run_as
        )
        log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                assert self._proc is not None
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("PostgreSQL did not start:\n" + self.log_tail()) from None
                time.sleep(0.05)

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(sql.encode())

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its TCP URL."""
        name = name or f"db{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def create_schema(self, name: str | None = None, dbname: str = "postgres") -> str:
        """A new schema, cheaper than a database: the returned URL makes it the connection's search path."""
        name = name or f"s{next(self._names)}_{os.getpid()}"
        self.execute(f'CREATE SCHEMA "{name}"', dbname)
        return self.url(dbname, options=f"-csearch_path={name}")

    def log_tail(self, lines: int = 40) -> str:
        path = self.work / "postgres.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: ends sessions, checkpoints, exits
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


@contextlib.contextmanager
def postgres_server(*, fsync: bool = True, settings: Sequence[str] = ()) -> Iterator[PostgresServer]:
    server = PostgresServer(fsync=fsync, settings=settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


__all__ = ["USER", "PostgresServer", "find_postgres_bin", "postgres_server"]
