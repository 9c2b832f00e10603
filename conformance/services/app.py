"""The ASGI app serving the contract services; SERVICES=Name,Name restricts the set (default: all)."""

import os

from conformance.services import (
    blocking,
    evolution,
    failing,
    ingress_services,
    interpreter,
    metadata,
    proxy,
    restart,
    scopes,
    state_services,
)
from conformance.services._sdk import restate

ALL = [
    *state_services.SERVICES,
    *proxy.SERVICES,
    *blocking.SERVICES,
    *failing.SERVICES,
    *interpreter.SERVICES,
    *evolution.SERVICES,
    *ingress_services.SERVICES,
    *metadata.SERVICES,
    *restart.SERVICES,
    *scopes.SERVICES,
]


def _selected() -> list[object]:
    wanted = os.environ.get("SERVICES", "").strip()
    if not wanted:
        return list(ALL)
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    unknown = names - {s.name for s in ALL}
    if unknown:
        raise SystemExit(f"SERVICES names unknown services: {sorted(unknown)}")
    return [s for s in ALL if s.name in names]


app = restate.app(services=_selected())
