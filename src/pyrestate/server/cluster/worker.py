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

from pyrestate.server import app
from pyrestate.server.cluster.layout import Layout
from pyrestate.server.cluster.router import WorkerCore
from pyrestate.server.cluster.supervisor import SPEC_ENV, WorkerSpec
from pyrestate.server.engine.core import EngineCore, engine_config_from

PR_SET_PDEATHSIG = 1


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
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s [worker {i}] %(name)s: %(message)s",
    )
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    worker_dir = Layout.worker_dir(config.data_dir, i)
    worker_dir.mkdir(parents=True, exist_ok=True)
    engine = EngineCore(dataclasses.replace(engine_config_from(config), data_dir=worker_dir))
    db_paths = [
        dataclasses.replace(engine.config, data_dir=Layout.worker_dir(config.data_dir, w)).database_path
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
