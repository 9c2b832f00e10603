"""One real `pyrestate server` with the official-SDK deployment console_app.py, shared by the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from console_support import ConsoleStack

from pyrestate.testing import PyrestateServer, ServiceApp, register_deployment

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    tmp = tmp_path_factory.mktemp("console-stack")
    server = PyrestateServer(data_dir=tmp / "server", log_dir=tmp)
    app = ServiceApp("console_app:app", log_dir=tmp, cwd=HERE, pythonpath=[HERE])
    server.start()
    try:
        app.start()
        dep_id = register_deployment(server.admin_url, app.url)["id"]
        with (
            httpx.Client(base_url=server.admin_url, timeout=30) as admin,
            httpx.Client(base_url=server.ingress_url, timeout=30) as ingress,
        ):
            yield ConsoleStack(server, dep_id, admin, ingress)
    finally:
        app.close()
        server.close()
