"""Schema administration of a cluster on PostgreSQL (`pg_node.NodeCore`, mixed into it).

Every node answers the admin API; the change itself runs on the node's front engine, under an advisory
lock over all nodes and on schema reread from the database, so two nodes never change it from stale
copies. Then every live member is told to reread (one that misses it sees the change at its next beat).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pyrestate.server.cluster import membership
from pyrestate.server.cluster.node_link import Transport
from pyrestate.server.core_api import (
    DeploymentRecord,
    DeploymentRegistration,
    QuerySnapshot,
    RegistrationResult,
    ServicePatch,
    ServiceSchema,
)
from pyrestate.server.engine.core import EngineCore
from pyrestate.server.flow_limits import Delete, Rule, RuleBook, Upsert

log = logging.getLogger(__name__)

SCHEMA_LOCK = 0x7079_7363_6865  # advisory lock: one schema change at a time over all nodes


class NodeSchema:
    """The schema half of `NodeCore`: reads go to the front engine, changes through `_schema_change`."""

    # Provided by NodeCore.
    me: str
    ttl_ms: int
    front: EngineCore
    engines: dict[int, EngineCore]
    transport: Transport | None
    _schema_lock: asyncio.Lock
    _schema_conn: Any
    _unknown_reload_at: float

    def _reread_for_unknown(self) -> None:
        """A service this node does not know may come from a change it has not read yet (its notice was
        missed; the next beat would bring it). Reread now, at most once a second, so requests for services
        that really do not exist stay cheap."""
        now = time.monotonic()
        if now - self._unknown_reload_at > 1.0:
            self._unknown_reload_at = now
            self._reload_schema()

    def _reload_schema(self) -> None:
        for engine in (self.front, *self.engines.values()):
            try:
                engine.reload_schema()
            except Exception:
                log.exception("reloading the schema failed")

    async def _schema_change(self, change: Callable[[], Awaitable[Any]]) -> Any:
        """Run a schema change of the front engine under the cluster-wide lock, on fresh schema, then tell
        every node (each reloads from the database; one that misses this sees it at its next beat)."""
        async with self._schema_lock:
            await self._schema_conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
            try:
                self.front.reload_schema()
                out = await change()
                # The members as the database sees them now, not as of our last beat: a node that came
                # up since then already runs engines on the old schema.
                members = await membership.live_members(self._schema_conn, self.ttl_ms)
            finally:
                await self._schema_conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
        self._reload_schema()
        assert self.transport is not None
        peers = [m.node_id for m in members if m.node_id != self.me]
        self.transport.addresses.update({m.node_id: m.address for m in members if m.node_id != self.me})
        results = await asyncio.gather(
            *(asyncio.wait_for(self.transport.call(n, "schema"), 5.0) for n in peers), return_exceptions=True
        )
        for n, r in zip(peers, results, strict=True):
            if isinstance(r, BaseException):
                log.warning("node %s did not confirm the schema change: %s", n, r)
        return out

    def lookup_service(self, name: str) -> ServiceSchema | None:
        found = self.front.lookup_service(name)
        if found is None:
            self._reread_for_unknown()
            found = self.front.lookup_service(name)
        return found

    def list_services(self) -> list[ServiceSchema]:
        return self.front.list_services()

    async def list_deployments(self) -> list[DeploymentRecord]:
        return await self.front.list_deployments()

    async def get_deployment(self, deployment_id: str) -> DeploymentRecord:
        return await self.front.get_deployment(deployment_id)

    async def register_deployment(self, registration: DeploymentRegistration) -> RegistrationResult:
        if registration.dry_run:
            return await self.front.register_deployment(registration)
        out: RegistrationResult = await self._schema_change(
            lambda: self.front.register_deployment(registration)
        )
        return out

    async def delete_deployment(self, deployment_id: str) -> None:
        await self._schema_change(lambda: self.front.delete_deployment(deployment_id))

    async def update_deployment(
        self, deployment_id: str, registration: DeploymentRegistration
    ) -> DeploymentRecord:
        out: DeploymentRecord = await self._schema_change(
            lambda: self.front.update_deployment(deployment_id, registration)
        )
        return out

    async def update_service(self, name: str, patch: ServicePatch) -> ServiceSchema:
        out: ServiceSchema = await self._schema_change(lambda: self.front.update_service(name, patch))
        return out

    def rule_book(self) -> RuleBook:
        return self.front.rule_book()

    async def upsert_rules(self, entries: Sequence[Upsert]) -> list[Rule]:
        out: list[Rule] = await self._schema_change(lambda: self.front.upsert_rules(entries))
        return out

    async def delete_rules(self, entries: Sequence[Delete]) -> list[str]:
        out: list[str] = await self._schema_change(lambda: self.front.delete_rules(entries))
        return out

    def query_snapshot(self) -> QuerySnapshot:
        return self.front.query_snapshot()  # one snapshot of the shared database is the whole cluster


__all__ = ["NodeSchema"]
