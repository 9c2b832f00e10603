"""The pytest plugin as a user meets it: a separate project's test suite, run by pytest in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

APP = """
import pyrestate.sdk as restate

counter = restate.VirtualObject("PluginCounter")

@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count") or 0) + delta
    ctx.set("count", value)
    return value

app = restate.app([counter])
"""

TESTS = """
def test_first(restate):
    assert restate.ingress.call_json("PluginCounter", "add", 2, key="k") == 2

def test_state_is_kept_within_the_session(restate):
    assert restate.ingress.call_json("PluginCounter", "add", 3, key="k") == 5
"""


def run_user_suite(project: Path, conftest: str, ini: str = "") -> subprocess.CompletedProcess[str]:
    (project / "mycounter.py").write_text(APP)
    (project / "test_counter.py").write_text(TESTS)
    (project / "conftest.py").write_text(textwrap.dedent(conftest))
    (project / "pytest.ini").write_text("[pytest]\n" + ini)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_restate_fixture_serves_an_app_object_from_a_fixture(tmp_path: Path) -> None:
    r = run_user_suite(
        tmp_path,
        """
        import pytest
        pytest_plugins = ["pyrestate.testing.pytest_plugin"]

        @pytest.fixture(scope="session")
        def restate_app():
            from mycounter import app
            return app
    """,
    )
    assert r.returncode == 0 and "2 passed" in r.stdout, r.stdout + r.stderr


def test_the_restate_fixture_serves_module_app_from_the_ini_option(tmp_path: Path) -> None:
    r = run_user_suite(
        tmp_path,
        """
        pytest_plugins = ["pyrestate.testing.pytest_plugin"]
    """,
        ini="restate_app = mycounter:app\n",
    )
    assert r.returncode == 0 and "2 passed" in r.stdout, r.stdout + r.stderr


def test_without_an_app_the_user_is_told_what_to_define(tmp_path: Path) -> None:
    r = run_user_suite(
        tmp_path,
        """
        pytest_plugins = ["pyrestate.testing.pytest_plugin"]
    """,
    )
    assert r.returncode != 0
    assert "define a `restate_app` fixture" in r.stdout + r.stderr
