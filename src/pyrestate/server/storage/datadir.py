"""The SQLite data directory: an exclusive lock, and a commit mark that notices acknowledged commits lost.

**Lock.** `pyrestate.lock` in the data dir is `flock`ed for the life of the process (the OS drops it when the
process dies, kill -9 included) and holds the owner's pid, command line and addresses, so a second server
on the same directory exits at once naming the first.

**Commit mark.** SQLite in WAL mode keeps every commit since the last checkpoint only in `-wal`. If that
file is deleted after an unclean stop, or its tail is damaged (recovery silently stops at the first frame
whose checksum fails), the database opens without error and without those commits. To notice:

* every group commit also writes its sequence number (and the count of logical transactions) into the
  database (`pyrestate_meta`, inside the same transaction: no extra fsync, one more page in the WAL);
* once COMMIT has returned, that number is written to `pyrestate.sqlite3-mark` with a plain `pwrite`
  (no fsync). The mark never runs ahead of what is durable in the database + WAL; a process crash
  (kill -9) keeps page-cache writes, so after one the mark equals the last acknowledged commit exactly.
  The mark is fsynced at most once a second (by the checkpoint thread) and at open and close: after an
  OS crash or power loss it may lag by up to that second, and a loss confined to those last commits is
  not seen;
* a clean stop checkpoints the WAL into the main file (TRUNCATE) and then marks the file `clean`; while
  a server runs, or after it died, the mark says `running`, and a `-wal` file always exists then.

On start, before SQLite opens the database (which would create a fresh WAL): a `running` mark with no
`-wal` file means the WAL was lost; after SQLite's recovery, a database sequence below the mark's means
commits were lost (the difference is how many). Either refuses to start unless `accept_data_loss`.

The mark has two 64-byte slots written alternately, each with a CRC, so a torn write leaves the other.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import struct
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from pyrestate.server.storage.api import StorageUnavailable

LOCK_NAME = "pyrestate.lock"
MARK_SUFFIX = "-mark"


class DataDirError(StorageUnavailable):
    """The data dir cannot be used as it is (locked, damaged, lost commits): said in one line."""


class DataDirLocked(DataDirError):
    pass


class DataLoss(DataDirError):
    pass


class DataDirLock:
    """An exclusive `flock` on `<dir>/pyrestate.lock`, held until `release` or the end of the process."""

    def __init__(self, directory: Path, note: str = "") -> None:
        self.path = directory / LOCK_NAME
        self._note = note
        self._fd: int | None = None

    def acquire(self) -> None:
        check_access(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise DataDirLocked(
                f"the data dir {self.path.parent} is in use by another pyrestate server "
                f"({describe_holder(self.path)}); stop it or choose another --data-dir"
            ) from None
        self._fd = fd
        owner = {
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.orig_argv if sys.argv[0] == "-c" else sys.argv),
            "note": self._note,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def describe_holder(lock_path: Path) -> str:
    """Who holds the lock, from what it wrote into the lock file (best effort)."""
    try:
        owner = json.loads(lock_path.read_text())
    except (OSError, ValueError):
        return "its owner left no details"
    parts = [f"pid {owner.get('pid')}"]
    if owner.get("note"):
        parts.append(str(owner["note"]))
    if owner.get("started"):
        parts.append(f"started {owner['started']}")
    if owner.get("command"):
        parts.append(f"command: {owner['command']}")
    return ", ".join(parts)


def holder_of(directory: Path) -> str | None:
    """A description of the process locking `directory`, or None when nobody does."""
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return describe_holder(path)
    finally:
        os.close(fd)
    return None


# ------------------------------------------------------------------------------------------- commit mark

_SLOT = 64
_MAGIC = b"PYRSMARK"
_FORMAT = 1
_RECORD = struct.Struct("<8sIIQQQ")  # magic, format, clean, generation, commits, transactions
_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class Mark:
    clean: bool
    commits: int
    transactions: int


class CommitMark:
    """The `-mark` file next to the database (see the module docstring)."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + MARK_SUFFIX)
        self._fd: int | None = None
        self._generation = 0
        self._dirty = False

    def read(self) -> Mark | None:
        """The newest intact slot; None when there is no mark (a new or restored data dir)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        best: tuple[int, Mark] | None = None
        for off in (0, _SLOT):
            rec = data[off : off + _RECORD.size + _CRC.size]
            if len(rec) < _RECORD.size + _CRC.size:
                continue
            body, (crc,) = rec[: _RECORD.size], _CRC.unpack(rec[_RECORD.size :])
            if zlib.crc32(body) != crc:
                continue
            magic, fmt, clean, gen, commits, transactions = _RECORD.unpack(body)
            if magic != _MAGIC or fmt != _FORMAT:
                continue
            if best is None or gen > best[0]:
                best = (gen, Mark(bool(clean), commits, transactions))
        if best is None:
            raise DataDirError(
                f"the commit mark {self.path} is damaged, so lost commits cannot be ruled out; "
                "remove it to start anyway, or restore the data dir from a backup"
            )
        self._generation = best[0]
        return best[1]

    def open(self) -> None:
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if created:
            fsync_dir(self.path.parent)

    def write(self, mark: Mark) -> None:
        """Write without fsync: the cost of one system call per group commit."""
        if self._fd is None:
            return
        self._generation += 1
        body = _RECORD.pack(
            _MAGIC, _FORMAT, int(mark.clean), self._generation, mark.commits, mark.transactions
        )
        with contextlib.suppress(OSError):  # a mark left behind only makes the check weaker
            os.pwrite(self._fd, body + _CRC.pack(zlib.crc32(body)), (self._generation % 2) * _SLOT)
        self._dirty = True

    def sync(self) -> None:
        fd = self._fd
        if fd is not None and self._dirty:
            self._dirty = False
            with contextlib.suppress(OSError):  # a failing disk shows up in the commits themselves
                os.fdatasync(fd)

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_access(path: Path) -> None:
    """Say precisely why `path` (when it exists) cannot be opened for reading and writing."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise DataDirError(f"{path} is not a regular file")
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
    except PermissionError as e:
        raise DataDirError(
            f"cannot open {path} for reading and writing: {e.strerror} (owner uid {st.st_uid}, mode "
            f"{stat.S_IMODE(st.st_mode):o}; this server runs as uid {os.geteuid()})"
        ) from None


def backup(db_path: Path, out_dir: Path) -> tuple[int, int]:
    """Copy the database, consistent as of one moment, into `out_dir` (new or empty) while a server may be
    writing it: SQLite's online backup in a single step, i.e. one read transaction, which in WAL mode never
    blocks the writer. Returns (pages, the number of the last commit it holds)."""
    import sqlite3

    if not db_path.is_file():
        raise DataDirError(f"no database at {db_path}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataDirError(f"{out_dir} exists and is not an empty directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / (db_path.name + ".partial")
    # Read-only: a read-only connection never checkpoints or deletes the WAL of a stopped server.
    src = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)
            (check,) = dst.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise DataDirError(f"the copy of {db_path} fails SQLite's check: {check}")
            (pages,) = dst.execute("PRAGMA page_count").fetchone()
            row = dst.execute("SELECT commits FROM pyrestate_meta").fetchone()
        finally:
            dst.close()
    except sqlite3.DatabaseError as e:
        partial.unlink(missing_ok=True)
        raise DataDirError(f"cannot back up {db_path}: {e}") from None
    finally:
        src.close()
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    partial.rename(out_dir / db_path.name)
    fsync_dir(out_dir)
    return int(pages), int(row[0])
