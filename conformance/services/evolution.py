"""Services whose shape depends on the deployment: UpgradeTest (v1/v2 side by side) and SchemaEvolution
(incompatible re-registration).

E2E_UPGRADETEST_VERSION names the version this process serves (default v1); SCHEMA_EVOLUTION_VARIANT picks
the SchemaEvolution shape: `base` (object: exclusive `first`, shared `second`), `evolved` (`second` removed
and `first` made shared: changes Restate accepts without force), `service_type` (a plain service: needs
force).
"""

import os
from typing import Any

from conformance.services._sdk import restate
from conformance.services.blocking import hold

VERSION = os.environ.get("E2E_UPGRADETEST_VERSION", "v1")
VARIANT = os.environ.get("SCHEMA_EVOLUTION_VARIANT", "base")

upgrade = restate.Service("UpgradeTest")


@upgrade.handler(name="executeSimple")
async def execute_simple(ctx: restate.Context) -> str:
    return VERSION


@upgrade.handler(name="executeComplex")
async def execute_complex(ctx: restate.Context, holder_key: str) -> str:
    """Blocks on an awakeable handed to AwakeableHolder/<holder_key>; answers the version that finished it."""
    awakeable_id, awakeable = ctx.awakeable(type_hint=str)
    ctx.object_send(hold, key=holder_key, arg=awakeable_id)
    await awakeable
    return VERSION


def _schema_evolution() -> Any:
    if VARIANT == "service_type":
        svc = restate.Service("SchemaEvolution")

        @svc.handler()
        async def first(ctx: restate.Context) -> str:
            return VARIANT

        @svc.handler()
        async def second(ctx: restate.Context) -> str:
            return VARIANT

        return svc
    obj = restate.VirtualObject("SchemaEvolution")

    @obj.handler(kind="shared" if VARIANT == "evolved" else "exclusive")
    async def first(ctx: restate.ObjectContext) -> str:
        return VARIANT

    if VARIANT != "evolved":

        @obj.handler(kind="shared")
        async def second(ctx: restate.ObjectSharedContext) -> str:
            return VARIANT

    return obj


schema_evolution = _schema_evolution()

SERVICES = [upgrade, schema_evolution]
