"""pytest fixtures for testing your services against a real server. Enable it in your conftest.py:

    pytest_plugins = ["pyrestate.testing.pytest_plugin"]

    @pytest.fixture(scope="session")
    def restate_app():
        return "mymod:app"            # or the ASGI object itself, or a list of either

    def test_greet(restate):          # one server and your app(s) for the whole session
        assert restate.ingress.call_json("Greeter", "greet", "Ada") == "Hello, Ada!"

Instead of the fixture, the ini option `restate_app = mymod:app` names the app.
PYRESTATE_TEST_RUNTIME=official runs the official restate-server instead of pyrestate's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, cast

import pytest

from pyrestate.testing.local import AppSpec, LocalRestate, local_restate
from pyrestate.testing.runtime import RuntimeKind


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("restate_app", "MODULE:APP served and registered by the `restate` fixture", default="")


@pytest.fixture(scope="session")
def restate_app(pytestconfig: pytest.Config) -> Any:
    """The app(s) under test; override this fixture or set the `restate_app` ini option."""
    ref = str(pytestconfig.getini("restate_app"))
    if not ref:
        raise pytest.UsageError("define a `restate_app` fixture or the `restate_app` ini option (MODULE:APP)")
    return ref


@pytest.fixture(scope="session")
def restate(restate_app: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRestate]:
    """A server with the app(s) of `restate_app` registered; `restate.ingress` calls handlers."""
    specs: list[AppSpec] = list(restate_app) if isinstance(restate_app, list | tuple) else [restate_app]
    kind = cast(RuntimeKind, os.environ.get("PYRESTATE_TEST_RUNTIME", "pyrestate"))
    with local_restate(*specs, runtime=kind, log_dir=tmp_path_factory.mktemp("restate-logs")) as env:
        yield env
