"""Attacks on the SQLite data dir: a second server on it, its WAL deleted or garbled after kill -9, a damaged
main file, and an online backup restored. Each refusal is one line on stderr, without a traceback."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from resfaults_apps import counter_app

from pyrestate.testing import InProcessApp, ProcessError, RuntimeConfig, make_runtime, register_deployment
from pyrestate.testing.process import ManagedProcess, free_port
from pyrestate.testing.runtime import PyrestateServer

pytestmark = pytest.mark.timeout(240)

DB = "pyrestate.sqlite3"


@pytest.fixture(scope="module")
def app() -> Iterator[InProcessApp]:
    a = InProcessApp(counter_app)
    a.start()
    yield a
    a.stop()


def server(base: Path, log_dir: Path, name: str, **env: str) -> PyrestateServer:
    """A server on `base/data`; every call picks new ports."""
    rt = make_runtime("pyrestate", RuntimeConfig(extra_env=env), data_dir=base, log_dir=log_dir, name=name)
    assert isinstance(rt, PyrestateServer)
    return rt


def refusal(rt: PyrestateServer) -> str:
    """Start `rt`, which must exit non-zero: its one-line error."""
    with pytest.raises(ProcessError):
        rt.start()
    assert rt.process.returncode not in (None, 0)
    text = rt.log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[-4000:]
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text[-4000:]
    return errors[0]


def add(ingress: str, key: str, delta: int = 1) -> int:
    r = httpx.post(f"{ingress}/DiskCounter/{key}/add", json=delta, timeout=30)
    assert r.status_code == 200, r.text
    return int(r.json())


def counts(admin: str) -> dict[str, int]:
    r = httpx.post(
        f"{admin}/query",
        json={"query": "SELECT service_key FROM state WHERE service_name = 'DiskCounter'"},
        headers={"accept": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return {row["service_key"]: 1 for row in r.json()["rows"]}


# ------------------------------------------------------------------------------------------ second server


def test_a_second_server_on_the_same_data_dir_is_refused_naming_the_first(
    tmp_path: Path, app: InProcessApp
) -> None:
    first = server(tmp_path, tmp_path, "first")
    second = server(tmp_path, tmp_path, "second")
    try:
        first.start()
        register_deployment(first.admin_url, app.url)
        assert add(first.ingress_url, "a") == 1
        line = refusal(second)
        assert "is in use by another pyrestate server" in line, line
        assert f"pid {first.process.pid}" in line and f"127.0.0.1:{first.ingress_port}" in line, line
        assert add(first.ingress_url, "a") == 2  # the first one is untouched
        first.kill()  # the OS drops the lock of a killed process: the next server starts
        second.start()
        assert add(second.ingress_url, "a") == 3
    finally:
        second.close()
        first.close()


def test_pyrestate_dev_refuses_a_data_dir_in_use(tmp_path: Path) -> None:
    first = server(tmp_path, tmp_path, "first")
    try:
        first.start()
        # `pyrestate dev DIR` keeps the server's data in DIR/data, where `first` runs.
        proc = subprocess.run(
            [sys.executable, "-m", "pyrestate.cli.main", "dev", "resfaults_apps:counter_app",
             "--data-dir", str(tmp_path), "--ingress-port", str(free_port()),
             "--admin-port", str(free_port()), "--app-port", str(free_port())],
            capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent,
        )  # fmt: skip
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr, proc.stderr
        assert "in use by another pyrestate server" in proc.stderr, proc.stderr
        assert f"pid {first.process.pid}" in proc.stderr, proc.stderr
        assert first.process.is_running()
    finally:
        first.close()


# ------------------------------------------------------------------------------- WAL lost after kill -9


def crashed_with_acknowledged(tmp_path: Path, app: InProcessApp, n: int) -> Path:
    """A data dir whose server acknowledged `n` increments (keys k0…) and was then killed with SIGKILL."""
    rt = server(tmp_path, tmp_path, "crashed")
    try:
        rt.start()
        register_deployment(rt.admin_url, app.url)
        for i in range(n):
            assert add(rt.ingress_url, f"k{i}") == 1
        rt.kill()
    finally:
        rt.close()
    data = tmp_path / "data"
    assert (data / f"{DB}-wal").stat().st_size > 0
    return data


def test_a_wal_deleted_after_kill_9_is_refused_unless_the_loss_is_accepted(
    tmp_path: Path, app: InProcessApp
) -> None:
    data = crashed_with_acknowledged(tmp_path, app, 30)
    (data / f"{DB}-wal").unlink()
    line = refusal(server(tmp_path, tmp_path, "after-delete"))
    assert "data loss" in line and "write-ahead log was deleted after an unclean stop" in line, line
    assert "acknowledged commits" in line or "how many is not known" in line, line
    assert "--accept-data-loss" in line, line
    accepted = server(tmp_path, tmp_path, "accepted", PYRESTATE_ACCEPT_DATA_LOSS="true")
    try:
        accepted.start()
        text = accepted.log_path.read_text()
        assert "accepting data loss" in text, text[-2000:]
        accepted.stop()  # a clean stop: the next start needs no flag
        accepted.start()
    finally:
        accepted.close()


def test_a_garbled_wal_tail_after_kill_9_is_refused_with_the_count(tmp_path: Path, app: InProcessApp) -> None:
    n = 100
    data = crashed_with_acknowledged(tmp_path, app, n)
    wal = data / f"{DB}-wal"
    with wal.open("r+b") as f:
        f.seek(-3072, os.SEEK_END)
        f.write(os.urandom(3072))
    line = refusal(server(tmp_path, tmp_path, "after-garble"))
    assert "data loss" in line and "acknowledged commits" in line, line
    missing = int(line.split("data loss: ")[1].split(" acknowledged commits")[0])
    assert missing >= 1, line
    accepted = server(tmp_path, tmp_path, "accepted", PYRESTATE_ACCEPT_DATA_LOSS="true")
    try:
        accepted.start()
        text = accepted.log_path.read_text()
        assert f"accepting data loss: {line.split('data loss: ')[1].split(':')[0]}" in text, text[-2000:]
        assert len(counts(accepted.admin_url)) <= n
    finally:
        accepted.close()


# --------------------------------------------------------------------------------- damaged main file


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, app: InProcessApp) -> Path:
    """A data dir of a cleanly stopped server that acknowledged a few invocations."""
    base = tmp_path_factory.mktemp("pristine")
    rt = server(base, base, "pristine")
    try:
        rt.start()
        register_deployment(rt.admin_url, app.url)
        for i in range(20):
            add(rt.ingress_url, f"p{i}")
    finally:
        rt.close()
    assert not (base / "data" / f"{DB}-wal").exists()
    return base / "data"


def _garble_pages(db: Path) -> None:
    """Keep page 1 (header and schema), overwrite every other page."""
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.seek(4096)
        f.write(os.urandom(size - 4096))


def _foreign(db: Path) -> None:
    db.unlink()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()


def _header(db: Path) -> None:
    with db.open("r+b") as f:
        f.write(b"garbage" * 3)


def _newer(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


DAMAGES = {
    "not-a-database": (lambda db: db.write_bytes(os.urandom(db.stat().st_size)), "is not an SQLite database"),
    "header-garbled": (_header, "is not an SQLite database"),
    "malformed": (_garble_pages, "is damaged (SQLite: database disk image is malformed)"),
    "newer-schema": (_newer, "has schema version 99, newer than this pyrestate knows"),
    "foreign-database": (_foreign, "is an SQLite database but not pyrestate's (tables: customers)"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_main_file_is_refused_with_a_precise_message(
    damage: str, pristine: Path, tmp_path: Path
) -> None:
    shutil.copytree(pristine, tmp_path / "data")
    damage_fn, expected = DAMAGES[damage]
    damage_fn(tmp_path / "data" / DB)
    line = refusal(server(tmp_path, tmp_path, damage))
    assert expected in line, line
    assert "must be writable" not in line, line


def test_unreadable_files_are_refused_naming_owner_mode_and_user(pristine: Path) -> None:
    """The server runs as `nobody`; the files belong to root, mode 644."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the server as another user")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    probe = subprocess.run([*as_nobody, "-c", "import pyrestate"], capture_output=True, text=True)
    if probe.returncode != 0:  # a checkout under a private directory: uid 65534 cannot import the package
        pytest.skip(f"uid 65534 cannot import pyrestate from this checkout: {probe.stderr.strip()[-200:]}")
    base = Path(tempfile.mkdtemp(prefix="dd-perm-"))
    try:
        base.chmod(0o755)
        shutil.copytree(pristine, base / "data")
        (base / "data").chmod(0o777)

        def start_as_nobody() -> str:
            log = base / "nobody.log"
            log.unlink(missing_ok=True)
            proc = ManagedProcess(
                "nobody-server",
                [*as_nobody, "-m", "pyrestate.cli.main", "server", "--data-dir", str(base / "data"),
                 "--ingress-bind", f"127.0.0.1:{free_port()}", "--admin-bind", f"127.0.0.1:{free_port()}"],
                log, cwd=base,
            )  # fmt: skip
            proc.start()
            assert proc.wait(60) not in (None, 0), proc.log_tail()
            text = log.read_text()
            assert "Traceback" not in text, text
            return text

        text = start_as_nobody()
        assert f"cannot open {base / 'data' / 'pyrestate.lock'} for reading and writing" in text, text
        assert "Permission denied (owner uid 0, mode 644; this server runs as uid 65534)" in text, text
        os.chown(base / "data" / "pyrestate.lock", 65534, 65534)
        text = start_as_nobody()
        assert f"cannot open {base / 'data' / DB} for reading and writing: Permission denied" in text, text
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------- backup and restore


def test_an_online_backup_under_load_restores_every_invocation_acknowledged_before_it(
    tmp_path: Path, app: InProcessApp
) -> None:
    rt = server(tmp_path / "live", tmp_path, "live")
    acknowledged: list[tuple[float, str]] = []  # (when the answer came, key)
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=rt.ingress_url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                key = f"w{worker}-{i}"
                if client.post(f"/DiskCounter/{key}/add", json=1).status_code == 200:
                    acknowledged.append((time.monotonic(), key))
                i += 1

    out = tmp_path / "backup"
    try:
        rt.start()
        register_deployment(rt.admin_url, app.url)
        workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for w in workers:
            w.start()
        time.sleep(2.0)
        began = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pyrestate.cli.main", "backup", "--data-dir", str(rt.data_dir / "data"),
             str(out)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        time.sleep(1.0)  # more load after the copy: the copy must not see it, the server goes on
        stop.set()
        for w in workers:
            w.join()
        rt.stop()
    finally:
        stop.set()
        rt.close()
    before = {key for when, key in acknowledged if when < began}
    assert len(before) > 50 and len(acknowledged) > len(before)
    # Restore: the backup takes the place of the data dir.
    (tmp_path / "restored").mkdir()
    shutil.move(out, tmp_path / "restored" / "data")
    restored = server(tmp_path / "restored", tmp_path, "restored")
    try:
        restored.start()
        present = counts(restored.admin_url)
        assert before <= set(present), sorted(before - set(present))[:10]
        assert add(restored.ingress_url, sorted(before)[0]) == 2  # the deployment came back too
    finally:
        restored.close()


def test_backup_refuses_a_non_empty_target_and_a_missing_database(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    (tmp_path / "dd").mkdir()
    (tmp_path / "dd" / DB).write_bytes(b"")
    for data_dir, out in ((tmp_path / "nothing", tmp_path / "o2"), (tmp_path / "dd", tmp_path / "out")):
        proc = subprocess.run(
            [sys.executable, "-m", "pyrestate.cli.main", "backup", "--data-dir", str(data_dir), str(out)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 1 and proc.stderr.startswith("error:"), proc.stderr
        assert "Traceback" not in proc.stderr
