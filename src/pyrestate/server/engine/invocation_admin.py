"""Invocation administration of `EngineCore`: commands on one invocation (cancel, kill, purge, pause,
resume), restart as new, state edits, and the SQL snapshot behind the admin `/query`.

These are admin requests, not the ingress path: each turns into one command for the invocation's
partition (`_request`), or reads committed data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pyrestate.protocol.ids import InvocationId, partition_key_for_key
from pyrestate.server.config import ServerConfig
from pyrestate.server.core_api import (
    BadRequest,
    CommandOutcome,
    DeploymentRecord,
    InvocationCommand,
    NotFound,
    QuerySnapshot,
    ServiceSchema,
    ServiceType,
)
from pyrestate.server.partition.context import partition_of, partition_of_key
from pyrestate.server.partition.model import ManageInvocation, PatchState, RestartAsNew, Restarted
from pyrestate.server.storage.api import SnapshotStorage, Storage
from pyrestate.server.storage.records import InvocationStatus
from pyrestate.server.storage.sqlite import SqliteStorage
from pyrestate.server.timers.service import Clock


class InvocationAdmin:
    """The invocation half of the admin API on `EngineCore` (mixed into it)."""

    # Provided by EngineCore.
    config: ServerConfig
    storage: Storage
    clock: Clock
    _services: dict[str, ServiceSchema]
    _deployments: dict[str, DeploymentRecord]
    _request: Callable[[int, Any], Awaitable[Any]]
    _status: Callable[[str], InvocationStatus | None]

    async def invocation_command(
        self, invocation_id: str, command: InvocationCommand, *, deployment_id: str | None = None
    ) -> CommandOutcome:
        try:
            iid = str(InvocationId.parse(invocation_id))
        except ValueError as e:
            raise BadRequest(f"The request field 'invocation_id' is invalid. Reason: {e}") from None
        target_dp = self._resume_deployment(iid, command, deployment_id)
        result = await self._request(
            partition_of(iid, self.config.partitions),
            lambda token: ManageInvocation(iid, command, token, target_dp),
        )
        if isinstance(result, Exception):
            raise result
        assert isinstance(result, CommandOutcome)
        return result

    def _resume_deployment(self, iid: str, command: InvocationCommand, requested: str | None) -> str | None:
        """Resume's `deployment`: absent or "keep" keeps the pinned one, "latest" is the service's
        current deployment, anything else must name a registered deployment."""
        if command is not InvocationCommand.RESUME or requested in (None, "", "keep"):
            return None
        if requested == "latest":
            st = self._status(iid)
            svc = self._services.get(st.target.service) if st is not None else None
            return svc.deployment_id if svc is not None else None
        if requested not in self._deployments:
            raise BadRequest(f"The requested deployment '{requested}' does not exist")
        return requested

    async def restart_as_new(
        self, invocation_id: str, *, from_index: int | None = None, deployment: str | None = None
    ) -> str:
        try:
            iid = InvocationId.parse(invocation_id)
        except ValueError as e:
            raise BadRequest(f"The request field 'invocation_id' is invalid. Reason: {e}") from None
        pinned: str | None = None  # only a copied prefix is pinned; "keep": the original's deployment
        if from_index:
            choice = deployment or "latest"  # Restate: a restarted prefix goes to the latest by default
            if choice == "latest":
                st = self._status(str(iid))
                svc = self._services.get(st.target.service) if st is not None else None
                pinned = svc.deployment_id if svc is not None else "keep"
            elif choice == "keep" or choice in self._deployments:
                pinned = choice
            else:
                raise BadRequest(
                    "The given deployment was not found when trying to restart as new the invocation "
                    f"'{invocation_id}'."
                )
        # Same partition key: the new invocation lives with the original, as Restate places it.
        new_id = str(InvocationId.generate(iid.partition_key))
        result = await self._request(
            partition_of(str(iid), self.config.partitions),
            lambda token: RestartAsNew(str(iid), new_id, from_index or 0, pinned, token),
        )
        if isinstance(result, Exception):
            raise result
        assert isinstance(result, Restarted)
        return result.new_invocation_id

    async def set_state(self, service: str, key: str, new_state: Mapping[str, bytes]) -> None:
        svc = self._services.get(service)
        if svc is None:
            raise NotFound(f"The requested service '{service}' does not exist")
        if svc.ty is ServiceType.SERVICE:
            raise BadRequest(f"the service '{service}' has no state")
        partition = partition_of_key(partition_key_for_key(key), self.config.partitions)
        state = tuple(sorted((k.encode(), v) for k, v in new_state.items()))
        await self._request(partition, lambda token: PatchState(service, key, state, token))

    def invocation_status(self, invocation_id: str) -> InvocationStatus | None:
        return self._status(invocation_id)

    # ================================================================== SQL introspection (admin /query)

    def query_snapshot(self) -> QuerySnapshot:
        from pyrestate.server.query.source import SqliteSnapshot

        if isinstance(self.storage, SqliteStorage):
            return SqliteSnapshot(self.storage.path, now_ms=self.clock.now_ms())
        if isinstance(self.storage, SnapshotStorage):  # PostgreSQL: a snapshot on its own connection
            return self.storage.snapshot(now_ms=self.clock.now_ms())
        raise NotImplementedError(f"{type(self.storage).__name__} offers no SQL snapshot")
