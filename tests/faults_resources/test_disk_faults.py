"""A full disk and a read-only data dir: the server refuses new work with a clear 503 rather than
acknowledging what it cannot store, keeps what it had acknowledged, and recovers once space returns.

The data dir is a small tmpfs mounted for the test (root with mount rights, as on CI); elsewhere the test
is skipped."""

from __future__ import annotations

import contextlib
import errno
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from resfaults_apps import counter_app

from pyrestate.testing import InProcessApp, ProcessError, RuntimeConfig, make_runtime, register_deployment

pytestmark = pytest.mark.timeout(240)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def fill(path: Path) -> Path:
    """Write a file until the file system is full."""
    filler = path / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return filler


class Env:
    def __init__(self, ingress: str, admin: str, app_url: str = "") -> None:
        self.app_url = app_url
        self.ingress = httpx.Client(base_url=ingress, timeout=30)
        self.admin = httpx.Client(base_url=admin, timeout=30)

    def add(self, key: str, delta: int, idempotency_key: str | None = None) -> httpx.Response:
        headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
        return self.ingress.post(f"/DiskCounter/{key}/add", json=delta, headers=headers)

    def get(self, key: str) -> Any:
        r = self.ingress.post(f"/DiskCounter/{key}/get")
        assert r.status_code == 200, r.text
        return r.json()

    def refused(self) -> list[httpx.Response]:
        """New work of every kind while storage cannot write; none of it may be acknowledged."""
        return [
            self.add("a", 100, idempotency_key=str(uuid.uuid4())),
            self.ingress.post("/DiskCounter/a/add/send", json=100),
            self.admin.post(
                "/services/DiskCounter/state", json={"object_key": "a", "new_state": {"count": [57]}}
            ),
            self.admin.patch("/services/DiskCounter", json={"inactivity_timeout": "1m"}),
            self.admin.post("/deployments", json={"uri": self.app_url, "force": True}),
        ]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Env, Path]]:
    app = InProcessApp(counter_app)
    app.start()
    with tmpfs(tmp_path / "mnt", "8m") as mnt:
        # The log lives outside the small file system: a full disk must not silence the server.
        rt = make_runtime("pyrestate", RuntimeConfig(), data_dir=mnt, log_dir=tmp_path)
        try:
            rt.start()
            register_deployment(rt.admin_url, app.url)
            e = Env(rt.ingress_url, rt.admin_url, app.url)
            yield e, mnt
            e.ingress.close()
            e.admin.close()
        finally:
            rt.close()
            app.stop()


def check_refusals(responses: list[httpx.Response]) -> None:
    for r in responses:
        assert r.status_code == 503, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
        message = r.json()["message"]
        assert "disk" in message or "read-only" in message or "readonly" in message, message


def eventually_ok(fn: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        r = fn()
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_full_disk_refuses_new_work_and_recovers(env: tuple[Env, Path]) -> None:
    e, mnt = env
    r = e.add("a", 5)
    assert (r.status_code, r.json()) == (200, 5), r.text
    acknowledged = r.headers["x-restate-id"]
    filler = fill(mnt)
    try:
        check_refusals(e.refused())
        assert e.ingress.get("/restate/health").status_code == 200  # still serving
        # What was acknowledged reads back (a lookup writes nothing; a handler call would be new work).
        out = e.ingress.get(f"/restate/invocation/{acknowledged}/output")
        assert (out.status_code, out.json()) == (200, 5), out.text
    finally:
        filler.unlink()
    r = eventually_ok(lambda: e.add("a", 1))
    assert (r.status_code, r.json()) == (200, 6), r.text  # none of the refused increments was applied
    assert e.get("a") == 6


def test_read_only_data_dir_is_refused_with_a_clear_error_and_recovers(tmp_path: Path) -> None:
    """A file system cannot become read-only under open database files (EBUSY), so the server meets the
    read-only data dir when it starts: it must exit with a clear error, and start once writable."""
    app = InProcessApp(counter_app)
    app.start()
    with tmpfs(tmp_path / "mnt", "8m") as mnt:
        rt = make_runtime("pyrestate", RuntimeConfig(), data_dir=mnt, log_dir=tmp_path)
        try:
            rt.start()
            register_deployment(rt.admin_url, app.url)
            e = Env(rt.ingress_url, rt.admin_url)
            r = e.add("b", 2)
            assert r.status_code == 200, r.text
            rt.stop()
            remount(mnt, "ro")
            with pytest.raises(ProcessError):
                rt.start()
            log = rt.log_path.read_text(errors="replace")
            assert "cannot open the database" in log and "must be writable" in log, log[-2000:]
            assert "Traceback" not in log, log[-4000:]
            remount(mnt, "rw")
            rt.start()
            r = eventually_ok(lambda: e.add("b", 1))
            assert (r.status_code, r.json()) == (200, 3), r.text
            e.ingress.close()
            e.admin.close()
        finally:
            rt.close()
            app.stop()
