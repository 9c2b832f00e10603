"""One real `pyrestate server` and one official-SDK deployment (tests/cli/ops_app.py) shared by the CLI tests.

Tests that remove the deployment or need an empty server start their own (`fresh_stack`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import Stack, official_cli_path, start_stack, stop_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(tmp_path_factory.mktemp("cli-stack"))
    try:
        yield s
    finally:
        stop_stack(s)


@pytest.fixture
def fresh_stack(tmp_path: Path) -> Iterator[Stack]:
    s = start_stack(tmp_path, register=False)
    try:
        yield s
    finally:
        stop_stack(s)


@pytest.fixture(scope="session")
def restate_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """`restate_cli(stack, *args)`: the official `restate` CLI with an isolated HOME and config dir."""
    binary = official_cli_path()
    if binary is None:
        pytest.skip("official restate CLI not installed (make official-restate)")
    home = tmp_path_factory.mktemp("restate-cli-home")

    def run(stack: Stack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTATE_")}
        env.update(
            HOME=str(home),
            RESTATE_CLI_CONFIG_HOME=str(home / "config"),
            RESTATE_ADMIN_URL=stack.admin_url,
            RESTATE_INGRESS_URL=stack.server.ingress_url,
            NO_COLOR="1",
            TERM="dumb",
            COLUMNS="200",
        )
        return subprocess.run(
            [str(binary), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    yield run
