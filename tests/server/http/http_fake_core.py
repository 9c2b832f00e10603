"""A deliberately tiny ServerCore to test the HTTP layers in isolation (the engine is tested on its own).

It records what the HTTP layer handed over and answers with canned outcomes chosen by target name and
canned invocation ids. Where it answers, it answers as the engine does: test_core_contract.py runs the same
checks against FakeCore and the real EngineCore.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, replace

from pyrestate.protocol.ids import InvocationId, parse_awakeable_id
from pyrestate.server.core_api import (
    BadRequest,
    ById,
    ByIdempotencyKey,
    ByWorkflow,
    CommandOutcome,
    Conflict,
    DeploymentRecord,
    DeploymentRegistration,
    Failure,
    HandlerSchema,
    HandlerType,
    IngressInvocation,
    InvocationCommand,
    InvocationQuery,
    InvocationResult,
    NotFound,
    NotReady,
    Outcome,
    RegistrationResult,
    SendReceipt,
    ServicePatch,
    ServiceSchema,
    ServiceType,
    SubmitStatus,
    Success,
)

NOW_MS = 1_795_545_197_768  # 2026-11-24T18:33:17.768Z
EXPIRES_MS = NOW_MS + 86_400_000 + 6  # 2026-11-25T18:33:17.774Z
DP_ID = "dp_116zPhmWzWGcGcAu2eXpLYl"
DONE_ID = "inv_1fea71f0YPgA4uEXepTDJCwbp3Tfith2et"
PENDING_ID = "inv_13unNHbPWBNe0sXZ0Tc89YAvI1vhSL3uNz"
KILLED_ID = "inv_1cttqfy89hGI0ceTRqxHSztRjFw0luCTT0"
RUNNING_ID = "inv_19IbRABzqWL07fszESEajHpPI7JiyErxrx"
UNKNOWN_ID = "inv_1gaIzkHkIJGM5BB20OJ5elvNItcghaaKyg"
CALL_ID = "inv_1gYn61ZK9VeE1XqhQkGGumpn1jhxHuivcu"
WF_RUN_ID = "inv_12kpUQONmeFb2WqsVOkAjH4phS34cOyIC8"

JSON_IN = {"input_required": False, "input_content_type": "application/json"}


def _h(name: str, ty: HandlerType | None = None, **kw: object) -> HandlerSchema:
    return HandlerSchema(name=name, ty=ty, **kw)  # type: ignore[arg-type]


def sample_services() -> list[ServiceSchema]:
    def svc(name: str, ty: ServiceType, *handlers: HandlerSchema, **kw: object) -> ServiceSchema:
        return ServiceSchema(name, ty, {h.name: h for h in handlers}, DP_ID, 1, **kw)  # type: ignore[arg-type]

    return [
        svc(
            "taskWorker",
            ServiceType.SERVICE,
            _h("runTask", **JSON_IN, input_json_schema=True, output_json_schema={"type": "object"}),
        ),
        svc(
            "Echo",
            ServiceType.SERVICE,
            _h("headers", input_content_type=None, output_json_schema=True),
            _h("raw", input_content_type="text/*", input_required=True, output_content_type="text/plain"),
        ),
        svc("Fail", ServiceType.SERVICE, _h("terminal", **JSON_IN, input_json_schema={"type": "string"})),
        svc(
            "Counter",
            ServiceType.VIRTUAL_OBJECT,
            _h(
                "add",
                HandlerType.EXCLUSIVE,
                **JSON_IN,
                input_json_schema={"type": "integer"},
                output_json_schema={"type": "integer"},
            ),
            _h("get", HandlerType.SHARED, input_content_type=None, output_json_schema={"type": "integer"}),
            _h("reset", HandlerType.EXCLUSIVE, input_content_type=None, output_content_type=None),
        ),
        svc(
            "Wf",
            ServiceType.WORKFLOW,
            _h(
                "run",
                HandlerType.WORKFLOW,
                **JSON_IN,
                input_json_schema={"type": "object"},
                output_json_schema={"type": "object"},
            ),
            _h("stage", HandlerType.SHARED, input_content_type=None, output_json_schema=True),
        ),
        svc("Hidden", ServiceType.SERVICE, _h("x"), public=False),
    ]


class FakeCore:
    def __init__(self, services: list[ServiceSchema] | None = None) -> None:
        self.services: dict[str, ServiceSchema] = {
            s.name: s for s in (sample_services() if services is None else services)
        }
        self.invocations: list[IngressInvocation] = []
        self.awakeables: list[tuple[str, Outcome]] = []
        self.commands: list[tuple[str, InvocationCommand, str | None]] = []
        self.states: list[tuple[str, str, dict[str, bytes]]] = []
        self.registrations: list[DeploymentRegistration] = []
        self.deployments: dict[str, DeploymentRecord] = {}
        self.seen_keys: set[tuple[str, str, str]] = set()
        self.started_workflows: set[tuple[str, str]] = set()
        self.first_outcomes: dict[tuple[str, str, str], Outcome] = {}  # idempotent calls: the stored result
        self.purged: set[str] = set()

    # ---------------------------------------------------------------- ingress

    def lookup_service(self, name: str) -> ServiceSchema | None:
        return self.services.get(name)

    def _dedup(self, inv: IngressInvocation) -> bool:
        t = inv.target
        if t.service == "Wf" and t.handler == "run":
            k = (t.service, t.key or "")
            seen = k in self.started_workflows
            self.started_workflows.add(k)
            return seen
        if inv.idempotency_key is None:
            return False
        key3 = (t.service, t.handler, inv.idempotency_key)
        seen = key3 in self.seen_keys
        self.seen_keys.add(key3)
        return seen

    def _check_target(self, inv: IngressInvocation) -> ServiceSchema:
        t = inv.target
        svc = self.services.get(t.service)
        if svc is None:
            raise NotFound(f"service '{t.service}' not found")
        if t.handler not in svc.handlers:
            raise NotFound(f"handler '{t.service}/{t.handler}' not found")
        if svc.ty is not ServiceType.SERVICE and t.key is None:
            raise BadRequest(f"service '{t.service}' needs a key")
        return svc

    def _typed(self, svc: ServiceSchema, handler: str, outcome: Outcome) -> Outcome:
        """The handler's output content type on a non-empty success, as the engine answers."""
        h = svc.handlers[handler]
        if isinstance(outcome, Success) and (outcome.value or h.output_set_content_type_if_empty):
            return Success(outcome.value, h.output_content_type)
        return outcome

    def _canned(self, inv: IngressInvocation) -> Outcome:
        t = inv.target
        if t.service == "Fail":
            return Failure(422, "terminal failure: bad input")
        if t.service == "Echo" and t.handler == "headers":
            return Success(json.dumps(dict(inv.headers)).encode())
        if t.handler in ("reset",):
            return Success(b"")
        return Success(inv.body or b"null")

    async def call(self, inv: IngressInvocation) -> InvocationResult:
        svc = self._check_target(inv)
        self.invocations.append(inv)
        again = self._dedup(inv)
        t = inv.target
        if t.service == "Wf" and t.handler == "run":
            if again:
                return InvocationResult(WF_RUN_ID, Failure(409, "the workflow method was already invoked"))
            return InvocationResult(WF_RUN_ID, self._typed(svc, t.handler, self._canned(inv)))
        outcome = self._typed(svc, t.handler, self._canned(inv))
        if inv.idempotency_key is None:
            return InvocationResult(CALL_ID, outcome)
        # A repeated key attaches to the first invocation: its outcome, with the retention's expiry.
        key3 = (t.service, t.handler, inv.idempotency_key)
        first = self.first_outcomes.setdefault(key3, outcome)
        return InvocationResult(CALL_ID, first, expires_at_ms=EXPIRES_MS if again else None)

    async def send(self, inv: IngressInvocation) -> SendReceipt:
        self._check_target(inv)
        self.invocations.append(inv)
        again = self._dedup(inv)
        status = SubmitStatus.PREVIOUSLY_ACCEPTED if again else SubmitStatus.ACCEPTED
        when = NOW_MS + inv.delay_ms if inv.delay_ms else None  # no delay, or 0: not scheduled
        return SendReceipt(WF_RUN_ID if inv.target.service == "Wf" else PENDING_ID, status, when)

    @staticmethod
    def _parse(invocation_id: str) -> None:
        try:
            InvocationId.parse(invocation_id)
        except ValueError as e:
            raise BadRequest(f"bad invocation id '{invocation_id}': {e}") from None

    async def _find(self, query: InvocationQuery, wait: bool) -> InvocationResult:
        if isinstance(query, ById):
            self._parse(query.invocation_id)
            if query.invocation_id in self.purged:
                raise NotFound()
            if query.invocation_id == DONE_ID:
                return InvocationResult(DONE_ID, Success(b'{"result": "done"}'), EXPIRES_MS)
            if query.invocation_id == KILLED_ID:
                return InvocationResult(KILLED_ID, Failure(409, "killed"), EXPIRES_MS)
            if query.invocation_id == PENDING_ID:
                if wait:
                    return InvocationResult(PENDING_ID, Success(b'{"late": true}', "application/json"))
                raise NotReady()
        if isinstance(query, ByIdempotencyKey) and query.idempotency_key == "key-A":
            return InvocationResult(DONE_ID, Success(b'{"result": "A"}'), EXPIRES_MS)
        if isinstance(query, ByWorkflow) and query.key == "w1":
            if wait:
                return InvocationResult(WF_RUN_ID, Success(b'{"approved": true}'))
            raise NotReady()
        raise NotFound()

    async def attach(self, query: InvocationQuery) -> InvocationResult:
        return await self._find(query, wait=True)

    async def get_output(self, query: InvocationQuery) -> InvocationResult:
        return await self._find(query, wait=False)

    async def complete_awakeable(self, awakeable_id: str, outcome: Outcome) -> None:
        try:
            parse_awakeable_id(awakeable_id)
        except ValueError as e:
            raise BadRequest(f"bad awakeable id '{awakeable_id}': {e}") from None
        self.awakeables.append((awakeable_id, outcome))

    # ---------------------------------------------------------------- admin

    async def register_deployment(self, reg: DeploymentRegistration) -> RegistrationResult:
        self.registrations.append(reg)
        existing = next((d for d in self.deployments.values() if d.uri == reg.uri), None)
        if existing is not None and not reg.force:
            return RegistrationResult(existing, created=False)
        if existing is not None:  # forced: the deployment is overwritten in place, as a new revision
            dep_id = existing.id
        else:
            dep_id = DP_ID if not self.deployments else f"dp_1{len(self.deployments):022d}"
        services = tuple(
            replace(s, deployment_id=dep_id, revision=self._revision(s.name) + 1) for s in reg.services
        )
        record = DeploymentRecord(
            id=dep_id,
            uri=reg.uri,
            use_http_11=reg.use_http_11,
            protocol_mode=reg.protocol_mode,
            min_protocol_version=reg.min_protocol_version,
            max_protocol_version=reg.max_protocol_version,
            sdk_version=reg.sdk_version,
            additional_headers=reg.additional_headers,
            created_at_ms=existing.created_at_ms if existing is not None else NOW_MS,
            services=services,
        )
        if not reg.dry_run:
            self.deployments[dep_id] = record
            for s in services:
                self.services[s.name] = s
        return RegistrationResult(record, created=existing is None)

    def _revision(self, name: str) -> int:
        """The current revision of a service registered through this core (0: none yet)."""
        svc = self.services.get(name)
        return svc.revision if svc is not None and svc.deployment_id in self.deployments else 0

    async def list_deployments(self) -> list[DeploymentRecord]:
        return list(self.deployments.values())

    async def get_deployment(self, deployment_id: str) -> DeploymentRecord:
        if deployment_id not in self.deployments:
            raise NotFound(deployment_id)
        return self.deployments[deployment_id]

    async def delete_deployment(self, deployment_id: str) -> None:
        await self.get_deployment(deployment_id)
        del self.deployments[deployment_id]
        for name in [n for n, s in self.services.items() if s.deployment_id == deployment_id]:
            del self.services[name]

    def list_services(self) -> list[ServiceSchema]:
        return list(self.services.values())

    async def update_service(self, name: str, patch: ServicePatch) -> ServiceSchema:
        if name not in self.services:
            raise NotFound(name)
        s = self.services[name]
        changes = {
            f.name: getattr(patch, f.name) for f in fields(patch) if getattr(patch, f.name) is not None
        }
        s = replace(s, **changes)
        self.services[name] = s
        return s

    async def invocation_command(
        self, invocation_id: str, command: InvocationCommand, *, deployment_id: str | None = None
    ) -> CommandOutcome:
        self._parse(invocation_id)
        self.commands.append((invocation_id, command, deployment_id))
        if invocation_id == UNKNOWN_ID or invocation_id in self.purged:
            raise NotFound()
        completed = invocation_id in (DONE_ID, KILLED_ID)
        if completed and command in (InvocationCommand.CANCEL, InvocationCommand.KILL):
            raise Conflict()
        if not completed and command in (InvocationCommand.PURGE, InvocationCommand.PURGE_JOURNAL):
            raise Conflict()
        if invocation_id == KILLED_ID and command is InvocationCommand.PAUSE:
            raise BadRequest("cannot pause")
        if command is InvocationCommand.PURGE:
            self.purged.add(invocation_id)
        return CommandOutcome.ACCEPTED if command is InvocationCommand.CANCEL else CommandOutcome.DONE

    async def set_state(self, service: str, key: str, new_state: Mapping[str, bytes]) -> None:
        svc = self.services.get(service)
        if svc is None:
            raise NotFound(service)
        if svc.ty is ServiceType.SERVICE:
            raise BadRequest(f"the service '{service}' has no state")
        self.states.append((service, key, dict(new_state)))

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
