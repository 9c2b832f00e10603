"""Test harness: runtimes (official or pyrestate), SDK apps under hypercorn, HTTP helpers.

For your own tests, `local_restate(app)` starts a server and your app on free ports (see `local`), and
`pyrestate.testing.pytest_plugin` wraps it in fixtures.
"""

from pyrestate.testing.admin import Admin, AdminError, register_deployment
from pyrestate.testing.ingress import (
    AsyncIngress,
    Ingress,
    IngressError,
    eventually,
    eventually_async,
    json_of,
    target_path,
)
from pyrestate.testing.local import AppProcess, InProcessApp, LocalRestate, local_restate
from pyrestate.testing.process import ManagedProcess, ProcessError, free_port, wait_until_answers
from pyrestate.testing.runtime import (
    OfficialRestateServer,
    PyrestateServer,
    RuntimeConfig,
    RuntimeKind,
    RuntimeUnderTest,
    find_project_root,
    find_restate_server,
    make_runtime,
)
from pyrestate.testing.service_app import HYPERCORN_CONFIG, ServiceApp

__all__ = [
    "HYPERCORN_CONFIG",
    "Admin",
    "AdminError",
    "AppProcess",
    "AsyncIngress",
    "InProcessApp",
    "Ingress",
    "IngressError",
    "LocalRestate",
    "ManagedProcess",
    "OfficialRestateServer",
    "ProcessError",
    "PyrestateServer",
    "RuntimeConfig",
    "RuntimeKind",
    "RuntimeUnderTest",
    "ServiceApp",
    "eventually",
    "eventually_async",
    "find_project_root",
    "find_restate_server",
    "free_port",
    "json_of",
    "local_restate",
    "make_runtime",
    "register_deployment",
    "target_path",
    "wait_until_answers",
]
