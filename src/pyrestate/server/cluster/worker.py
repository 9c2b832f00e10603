"""Entry point of one worker process of `pyrestate server --workers N` (started by `supervisor`)."""

from __future__ import annotations

import asyncio
import base64
import ctypes
import dataclasses
import logging
import os
import pickle
import signal
from pathlib import Path

from pyrestate.server import app, logs
from pyrestate.server.cluster.layout import Layout
from pyrestate.server.cluster.router import WorkerCore
from pyrestate.server.cluster.supervisor import SPEC_ENV, WorkerSpec
from pyrestate.server.engine.core import EngineCore

PR_SET_PDEATHSIG = 1


class _WorkerField(logging.Filter):
    """Every line of a worker names it (`worker=i`, a field of the text and JSON formats alike)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def _die_with_parent(parent_pid: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before the call above
        raise SystemExit(0)


def main() -> None:
    spec: WorkerSpec = pickle.loads(base64.b64decode(os.environ.pop(SPEC_ENV)))
    _die_with_parent(spec.parent_pid)
    config, i, layout = spec.config, spec.index, spec.layout
    logs.configure(config.log_level, config.log_format, config.log_filter)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerField(i))
    worker_dir = Layout.worker_dir(config.data_dir, i)
    worker_dir.mkdir(parents=True, exist_ok=True)
    engine = EngineCore(dataclasses.replace(config, data_dir=worker_dir))
    db_paths = [
        dataclasses.replace(config, data_dir=Layout.worker_dir(config.data_dir, w)).database_path
        for w in range(layout.workers)
    ]
    core = WorkerCore(engine, layout, i, Path(spec.sockdir), db_paths)
    served = dataclasses.replace(
        config, ingress_bind=f"fd://{spec.ingress_fd}", admin_bind=f"fd://{spec.admin_fd}"
    )
    coro = app.run_server(served, core_factory=lambda _: core)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)


if __name__ == "__main__":
    main()
