"""A real `pyrestate server` plus the official-SDK app tests/cli/ops_app.py, and where the official CLI is."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx

from pyrestate.testing import PyrestateServer, ServiceApp, find_project_root, register_deployment

HERE = Path(__file__).parent
_CLI_REL = ".cache/restate/node_modules/@restatedev/restate-linux-x64/bin/restate"


@dataclass
class Stack:
    server: PyrestateServer
    app: ServiceApp
    deployment_id: str
    ingress: httpx.Client

    @property
    def admin_url(self) -> str:
        return self.server.admin_url

    def send(self, path: str, body: object = None) -> str:
        """`POST /{path}/send`; the invocation id."""
        r = (
            self.ingress.post(f"/{path}/send", json=body)
            if body is not None
            else self.ingress.post(f"/{path}/send")
        )
        assert r.status_code == 202, r.text
        inv_id: str = r.json()["invocationId"]
        return inv_id

    def query(self, sql: str) -> list[dict[str, object]]:
        r = httpx.post(
            f"{self.admin_url}/query", json={"query": sql}, headers={"accept": "application/json"}, timeout=10
        )
        assert r.status_code == 200, r.text
        rows: list[dict[str, object]] = r.json()["rows"]
        return rows


def start_stack(tmp: Path, register: bool = True) -> Stack:
    server = PyrestateServer(data_dir=tmp / "server", log_dir=tmp)
    app = ServiceApp("ops_app:app", log_dir=tmp, cwd=HERE, pythonpath=[HERE])
    server.start()
    try:
        app.start()
        dep_id = register_deployment(server.admin_url, app.url)["id"] if register else ""
    except BaseException:
        app.stop()
        server.close()
        raise
    return Stack(server, app, dep_id, httpx.Client(base_url=server.ingress_url, timeout=30))


def stop_stack(stack: Stack) -> None:
    stack.ingress.close()
    stack.app.close()
    stack.server.close()


def official_cli_path() -> Path | None:
    explicit = os.environ.get("RESTATE_CLI_BIN")
    if explicit:
        return Path(explicit)
    root = find_project_root(HERE)
    path = root / _CLI_REL if root else None
    return path if path is not None and path.is_file() else None
