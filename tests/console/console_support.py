"""The stack the console e2e tests run against (a module of its own: `conftest` names are not unique)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from pyrestate.testing import PyrestateServer


@dataclass
class ConsoleStack:
    server: PyrestateServer
    deployment_id: str
    admin: httpx.Client
    ingress: httpx.Client
