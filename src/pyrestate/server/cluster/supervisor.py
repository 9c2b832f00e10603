"""The parent process of `pyrestate server --workers N`.

It owns the listening sockets: for each of ingress and admin, N sockets bound to the same port with
SO_REUSEPORT, worker i inheriting socket i. The kernel spreads new connections over them; a worker that
dies leaves its socket open in the parent, so connections arriving meanwhile wait in its queue for the
restarted worker instead of being refused. The parent parses no request: routing happens in the workers,
each of which serves any request (see `router`). It restarts a worker that exits, and stops them all on
SIGTERM / SIGINT; a worker whose parent dies is sent SIGTERM by the kernel.
"""

from __future__ import annotations

import base64
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from pyrestate.server.cluster.layout import Layout, LayoutError, load_or_create
from pyrestate.server.config import ServerConfig, parse_bind

log = logging.getLogger("pyrestate.server")

SPEC_ENV = "PYRESTATE_CLUSTER_WORKER"
STOP_TIMEOUT_S = 30.0
RESTART_BACKOFF_S = (0.1, 2.0)
SHORT_LIFE_S = 3.0  # a worker dying sooner (e.g. it cannot open its file) is restarted less and less often


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    config: ServerConfig
    index: int
    layout: Layout
    sockdir: str
    ingress_fd: int
    admin_fd: int
    parent_pid: int


def listen_group(bind: str, n: int) -> list[socket.socket]:
    """`n` listening sockets on one address (port 0: the first one picks it for all)."""
    host, port = parse_bind(bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    out: list[socket.socket] = []
    for _ in range(n):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            for s in out:
                s.close()
            raise
        port = sock.getsockname()[1]
        sock.listen(1024)
        sock.set_inheritable(True)
        out.append(sock)
    return out


class Supervisor:
    def __init__(self, config: ServerConfig, layout: Layout) -> None:
        self.config = config
        self.layout = layout
        self.sockdir = Path(tempfile.mkdtemp(prefix="pyrestate-"))  # 0700: only this user reaches the workers
        n = layout.workers
        self.ingress = listen_group(config.ingress_bind, n)
        self.admin = listen_group(config.admin_bind, n)
        host, port = self.ingress[0].getsockname()[:2]
        if config.ingress_url is None:
            shown = f"[{host}]" if ":" in host else host
            self.config = _replace(config, ingress_url=f"http://{shown}:{port}/")
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self.started_at = [0.0] * n
        self.backoff = [RESTART_BACKOFF_S[0]] * n
        self.restarts = 0
        self._stop = False

    def spawn(self, i: int) -> None:
        spec = WorkerSpec(
            self.config,
            i,
            self.layout,
            str(self.sockdir),
            self.ingress[i].fileno(),
            self.admin[i].fileno(),
            os.getpid(),
        )
        env = dict(os.environ)
        env[SPEC_ENV] = base64.b64encode(pickle.dumps(spec)).decode()
        proc = self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "pyrestate.server.cluster.worker"],
            env=env,
            pass_fds=(spec.ingress_fd, spec.admin_fd),
        )
        self.started_at[i] = time.monotonic()
        log.info("worker %d started (pid %d, partitions %s)", i, proc.pid, self.layout.range_of(i))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        host, port = self.admin[0].getsockname()[:2]
        log.info(
            "%d workers over %d partitions; ingress on %s, admin on %s:%d",
            self.layout.workers,
            self.layout.partitions,
            self.config.ingress_url,
            host,
            port,
        )
        try:
            for i in range(self.layout.workers):
                self.spawn(i)
            pending_restart: dict[int, float] = {}
            while not self._stop:
                now = time.monotonic()
                for i, proc in enumerate(self.procs):
                    if i in pending_restart:
                        if now >= pending_restart[i]:
                            del pending_restart[i]
                            self.spawn(i)
                        continue
                    if proc is None or proc.poll() is None:
                        continue
                    quick = now - self.started_at[i] < SHORT_LIFE_S
                    low, high = RESTART_BACKOFF_S
                    self.backoff[i] = min(self.backoff[i] * 2, high) if quick else low
                    delay = self.backoff[i] if quick else 0.0
                    log.warning("worker %d exited (%s); restarting in %.1f s", i, proc.returncode, delay)
                    self.restarts += 1
                    pending_restart[i] = now + delay
                time.sleep(0.05)
            return 0
        finally:
            self.stop_all()

    def stop_all(self) -> None:
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for p in live:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in live:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for s in [*self.ingress, *self.admin]:
            s.close()
        shutil.rmtree(self.sockdir, ignore_errors=True)
        log.info("stopped")


def _replace(config: ServerConfig, **changes: object) -> ServerConfig:
    import dataclasses

    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def run_supervisor(config: ServerConfig) -> int:
    if config.storage != "sqlite":
        raise LayoutError("--workers needs the embedded SQLite storage (one database file per worker)")
    layout = load_or_create(config.data_dir, config.partitions, config.workers)
    try:
        sup = Supervisor(config, layout)
    except OSError as e:
        log.error("cannot listen: %s", e)
        return 1
    return sup.run()
