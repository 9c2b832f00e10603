"""Schema administration of `EngineCore`: deployments, services and the flow-control rule book.

Kept apart from the engine's request path: these change rarely, under `_schema_lock`, and are what the
admin API and the invoker's `Registry` read. The in-memory maps are the engine's own (`_deployments`,
`_services`, `_rules`); the cluster code reads them on the engine directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

from pyrestate.protocol.ids import DeploymentId
from pyrestate.server import logs
from pyrestate.server.core_api import (
    Conflict,
    DeploymentRecord,
    DeploymentRegistration,
    NotFound,
    RegistrationResult,
    ServicePatch,
    ServiceSchema,
)
from pyrestate.server.deployments import redact_uri
from pyrestate.server.flow_limits import Delete, Rule, RuleBook, Upsert
from pyrestate.server.invoker.service import Invoker, Registry
from pyrestate.server.partition.model import ReviewLimits
from pyrestate.server.partition.processor import PartitionProcessor
from pyrestate.server.storage.api import Storage
from pyrestate.server.storage.schema_codec import (
    deployment_from_json,
    deployment_to_json,
    service_from_json,
    service_to_json,
)
from pyrestate.server.timers.service import Clock

log = logging.getLogger(__name__)


def check_compatible(old: ServiceSchema, new: ServiceSchema) -> None:
    """Restate's rule for a new revision registered without `force`/`breaking`: the service type must not
    change (META0006). Removing handlers, changing a handler's type or its input/output is accepted, as the
    official server (1.7) does."""
    if old.ty is not new.ty:
        raise Conflict(
            f"[META0006] detected a new service revision for '{new.name}' changing the service type from "
            "previous revision. Service type cannot be changed across revisions."
        )


class SchemaAdmin(Registry):
    """The schema half of `EngineCore` (mixed into it); also the invoker's `Registry`."""

    # Provided by EngineCore.
    storage: Storage
    clock: Clock
    invoker: Invoker
    _services: dict[str, ServiceSchema]
    _deployments: dict[str, DeploymentRecord]
    _schema_lock: asyncio.Lock
    _rules: RuleBook
    _started: bool
    _partitions: list[PartitionProcessor]
    _mine: Callable[[int], bool]

    # ================================================================== registry (for the invoker)

    def lookup_service(self, name: str) -> ServiceSchema | None:
        return self._services.get(name)

    def get_deployment_record(self, deployment_id: str) -> DeploymentRecord | None:
        return self._deployments.get(deployment_id)

    def list_services(self) -> list[ServiceSchema]:
        return sorted(self._services.values(), key=lambda s: s.name)

    # ================================================================== deployments and services (admin)

    async def register_deployment(self, registration: DeploymentRegistration) -> RegistrationResult:
        async with self._schema_lock:
            existing = next((d for d in self._deployments.values() if d.uri == registration.uri), None)
            if existing is not None and not registration.force:
                return RegistrationResult(existing, created=False)
            dp_id = existing.id if existing is not None else str(DeploymentId.generate())
            services: list[ServiceSchema] = []
            for svc in registration.services:
                old = self._services.get(svc.name)
                if old is not None and not (registration.force or registration.breaking):
                    check_compatible(old, svc)
                revision = old.revision + 1 if old is not None else 1
                services.append(dataclasses.replace(svc, deployment_id=dp_id, revision=revision))
            # Overwriting a deployment drops the services it no longer offers (when it still serves them).
            new_names = {s.name for s in services}
            dropped = [
                name
                for name, svc in self._services.items()
                if existing is not None and svc.deployment_id == existing.id and name not in new_names
            ]
            record = DeploymentRecord(
                id=dp_id,
                uri=registration.uri,
                use_http_11=registration.use_http_11,
                protocol_mode=registration.protocol_mode,
                min_protocol_version=registration.min_protocol_version,
                max_protocol_version=registration.max_protocol_version,
                sdk_version=registration.sdk_version,
                additional_headers=dict(registration.additional_headers),
                created_at_ms=existing.created_at_ms if existing is not None else int(time.time() * 1000),
                services=tuple(services),
            )
            if registration.dry_run:
                return RegistrationResult(record, created=existing is None)
            txn = self.storage.begin()
            txn.put_deployment(record.id, deployment_to_json(record))
            for svc in services:
                txn.put_service(svc.name, service_to_json(svc))
            for name in dropped:
                txn.delete_service(name)
            await self.storage.commit(txn)
            self._deployments[record.id] = record
            for svc in services:
                self._services[svc.name] = svc
            for name in dropped:
                del self._services[name]
            if existing is not None:
                self.invoker.forget_deployment(record.id)
            _log_registration(record, existing is not None, dropped)
            return RegistrationResult(record, created=existing is None)

    async def update_deployment(
        self, deployment_id: str, registration: DeploymentRegistration
    ) -> DeploymentRecord:
        async with self._schema_lock:
            existing = await self.get_deployment(deployment_id)
            services = list(existing.services)
            dropped: list[str] = []
            if registration.force:  # overwrite: the rediscovered services replace the old ones
                services = []
                for svc in registration.services:
                    old = self._services.get(svc.name)
                    revision = old.revision + 1 if old is not None else 1
                    services.append(dataclasses.replace(svc, deployment_id=existing.id, revision=revision))
                new_names = {s.name for s in services}
                dropped = [
                    name
                    for name, svc in self._services.items()
                    if svc.deployment_id == existing.id and name not in new_names
                ]
            record = dataclasses.replace(
                existing,
                uri=registration.uri,
                use_http_11=registration.use_http_11,
                protocol_mode=registration.protocol_mode,
                min_protocol_version=registration.min_protocol_version,
                max_protocol_version=registration.max_protocol_version,
                sdk_version=registration.sdk_version,
                additional_headers=dict(registration.additional_headers),
                services=tuple(services),
            )
            if registration.dry_run:
                return record
            txn = self.storage.begin()
            txn.put_deployment(record.id, deployment_to_json(record))
            if registration.force:
                for svc in services:
                    txn.put_service(svc.name, service_to_json(svc))
                for name in dropped:
                    txn.delete_service(name)
            await self.storage.commit(txn)
            self._deployments[record.id] = record
            if registration.force:
                for svc in services:
                    self._services[svc.name] = svc
                for name in dropped:
                    del self._services[name]
            self.invoker.forget_deployment(record.id)  # the next attempt connects to the new address
            _log_registration(record, True, dropped)
            return record

    async def list_deployments(self) -> list[DeploymentRecord]:
        return sorted(self._deployments.values(), key=lambda d: d.created_at_ms)

    async def get_deployment(self, deployment_id: str) -> DeploymentRecord:
        dp = self._deployments.get(deployment_id)
        if dp is None:
            raise NotFound(f"The requested deployment '{deployment_id}' does not exist")
        return dp

    async def delete_deployment(self, deployment_id: str) -> None:
        async with self._schema_lock:
            dp = await self.get_deployment(deployment_id)
            txn = self.storage.begin()
            txn.delete_deployment(dp.id)
            gone = [s.name for s in self._services.values() if s.deployment_id == dp.id]
            for name in gone:
                txn.delete_service(name)
            await self.storage.commit(txn)
            del self._deployments[dp.id]
            for name in gone:
                del self._services[name]
            self.invoker.forget_deployment(dp.id)
            logs.event(log, logging.INFO, "Deployment removed", deployment_id=dp.id, services=",".join(gone))

    async def update_service(self, name: str, patch: ServicePatch) -> ServiceSchema:
        async with self._schema_lock:
            svc = self._services.get(name)
            if svc is None:
                raise NotFound(f"The requested service '{name}' does not exist")
            changes = {
                f.name: getattr(patch, f.name)
                for f in dataclasses.fields(patch)
                if getattr(patch, f.name) is not None
            }
            new = dataclasses.replace(svc, **changes)
            txn = self.storage.begin()
            txn.put_service(name, service_to_json(new))
            await self.storage.commit(txn)
            self._services[name] = new
            return new

    # ================================================================== flow control (rule book)

    def rule_book(self) -> RuleBook:
        return self._rules

    async def upsert_rules(self, entries: Sequence[Upsert]) -> list[Rule]:
        """Apply a batch of rule upserts atomically (PreconditionFailed: nothing changed), then let every
        partition start what fits under the new limits."""
        async with self._schema_lock:
            book, answer = self._rules.upsert(entries, self.clock.now_ms())
            await self._store_rules(book)
            return answer

    async def delete_rules(self, entries: Sequence[Delete]) -> list[str]:
        async with self._schema_lock:
            book, removed = self._rules.delete(entries)
            await self._store_rules(book)
            return removed

    async def _store_rules(self, book: RuleBook) -> None:
        if book is self._rules:
            return
        txn = self.storage.begin()
        txn.put_rule_book(book.to_bytes())
        await self.storage.commit(txn)
        self.adopt_rules(book)

    def adopt_rules(self, book: RuleBook) -> None:
        """Use a rule book that is stored already, and let every partition start what fits under it."""
        self._rules = book
        if self._started:
            for p in self._partitions:
                if self._mine(p.partition):
                    p.submit(ReviewLimits())

    # ================================================================== schema changed by another node

    def reload_schema(self) -> None:
        """Read deployments, services and the rule book again (another node changed them in the shared
        store)."""
        reader = self.storage.reader()
        deployments = {d.id: d for d in (deployment_from_json(doc) for _, doc in reader.all_deployments())}
        services = {s.name: s for s in (service_from_json(doc) for _, doc in reader.all_services())}
        changed = [
            d
            for d in deployments.keys() | self._deployments.keys()
            if deployments.get(d) != self._deployments.get(d)
        ]
        self._deployments = deployments
        self._services = services
        for dp_id in changed:
            self.invoker.forget_deployment(dp_id)
        book = RuleBook.from_bytes(reader.get_rule_book())
        if book.to_bytes() != self._rules.to_bytes():
            self.adopt_rules(book)


def _log_registration(record: DeploymentRecord, overwritten: bool, dropped: list[str]) -> None:
    logs.event(
        log,
        logging.INFO,
        f"Deployment {'updated' if overwritten else 'registered'}",
        deployment_id=record.id,
        uri=redact_uri(record.uri),
        sdk=record.sdk_version,
        services=",".join(s.name for s in record.services),
        removed_services=",".join(dropped) or None,
    )
    for svc in record.services:
        logs.event(
            log,
            logging.INFO,
            f"Service {svc.name} registered",
            service=svc.name,
            type=svc.ty.admin_name,
            revision=svc.revision,
            handlers=",".join(svc.handlers),
            deployment_id=record.id,
        )
