"""Handlers of the service, deployment and state pages: invoking a handler, registering and removing
deployments, and editing the state of a key."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pyrestate.server import core_api
from pyrestate.server.console.base import ConsoleBase, ms_text, sql_str
from pyrestate.server.console.http import COMMON_HEADERS, DONE, FAILED, ConsoleReply, html_reply, redirect
from pyrestate.server.console.markup import BASE, message_page, state_href
from pyrestate.server.console.service_pages import (
    deployments_page,
    invoke_result,
    keys_page,
    service_page,
    services_page,
    state_page,
)
from pyrestate.server.core_api import (
    ById,
    IngressInvocation,
    InvocationTarget,
    ServiceType,
    Success,
)
from pyrestate.server.deployments import redact_uri

STATE_PAGE = 100
KEYS_PAGE = 100
# A console edit reads the whole state of the key it changes (the engine replaces state as a whole).
MAX_EDIT_KEYS = 20_000
CALL_WAIT_S = 10.0


def state_version(pairs: Sequence[tuple[str, bytes]]) -> str:
    """A digest of a key's whole state (its names and values, in name order): what an edit form carries, so
    that an edit made on a page showing an older state is refused."""
    h = hashlib.sha256()
    for name, value in sorted(pairs):
        for part in (name.encode(), value):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()[:32]


def encode_value(text: str, encoding: str) -> bytes:
    """A value typed into a form, as the bytes to store. Raises ValueError with a message for people."""
    if encoding == "json":
        try:
            json.loads(text)
        except ValueError as e:
            raise ValueError(f"The value is not JSON: {e}") from None
        return text.encode()
    if encoding == "text":
        return text.encode()
    if encoding == "base64":
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("The value is not base64.") from None
    raise ValueError("Unknown encoding.")


class ServiceHandlers(ConsoleBase):
    """Services (and invoking them), deployments (and registering them), keys and state (and editing it)."""

    async def _pins(self, service: str | None = None) -> dict[str, tuple[int, int]]:
        """deployment id → (active invocations pinned to it, all invocations pinned to it)."""
        where = f" WHERE target_service_name = {sql_str(service)}" if service else ""
        rows = await self.query(
            "SELECT pinned_deployment_id AS d, status = 'completed' AS done, COUNT(*) AS n "
            f"FROM sys_invocation{where} GROUP BY 1, 2"
        )
        pins: dict[str, tuple[int, int]] = {}
        for r in rows:
            if r.get("d") is None:
                continue
            active, total = pins.get(str(r["d"]), (0, 0))
            n = int(r.get("n") or 0)
            pins[str(r["d"])] = (active + (0 if r.get("done") else n), total + n)
        return pins

    async def services(self) -> ConsoleReply:
        services = [
            {
                "name": s.name,
                "ty": s.ty.admin_name,
                "handlers": sorted(s.handlers),
                "deployment_id": s.deployment_id,
                "revision": s.revision,
                "public": s.public,
            }
            for s in sorted(self.core.list_services(), key=lambda s: s.name)
        ]
        return html_reply(200, services_page(services))

    async def service(
        self,
        name: str,
        *,
        result: str = "",
        error: str | None = None,
        form: Mapping[str, str] | None = None,
        status: int = 200,
    ) -> ConsoleReply:
        svc = self.core.lookup_service(name)
        if svc is None:
            return html_reply(
                404, message_page("Not found", f"The requested service '{name}' does not exist")
            )
        pins = await self._pins(name)
        deployments = [
            {
                "id": d.id,
                "endpoint": redact_uri(d.uri),
                "latest": d.id == svc.deployment_id,
                "active": pins.get(d.id, (0, 0))[0],
                "total": pins.get(d.id, (0, 0))[1],
            }
            for d in await self.core.list_deployments()
            if d.id == svc.deployment_id or d.id in pins or any(s.name == name for s in d.services)
        ]
        handlers = [
            {
                "name": h.name,
                "ty": h.ty.value if h.ty is not None else "",
                "input_content_type": h.input_content_type,
                "input_json_schema": h.input_json_schema,
                "output_content_type": h.output_content_type,
                "output_json_schema": h.output_json_schema,
                "documentation": h.documentation,
            }
            for h in sorted(svc.handlers.values(), key=lambda h: h.name)
        ]
        info = {
            "name": svc.name,
            "ty": svc.ty.admin_name,
            "revision": svc.revision,
            "public": svc.public,
            "documentation": svc.documentation,
        }
        page = service_page(info, handlers, deployments, result=result, error=error, form=form)
        return html_reply(status, page)

    def openapi(self, name: str) -> ConsoleReply:
        from pyrestate.server import openapi

        svc = self.core.lookup_service(name)
        if svc is None:
            return html_reply(
                404, message_page("Not found", f"The requested service '{name}' does not exist")
            )
        doc = openapi.service_openapi(svc, self.ingress_endpoint or "http://localhost:8080")
        body = json.dumps(doc, indent=2, ensure_ascii=False).encode()
        return ConsoleReply(200, body, [("content-type", "application/json"), *COMMON_HEADERS])

    async def invoke(self, name: str, form: Mapping[str, str]) -> ConsoleReply:
        svc = self.core.lookup_service(name)
        if svc is None:
            return html_reply(
                404, message_page("Not found", f"The requested service '{name}' does not exist")
            )
        handler = svc.handlers.get(form.get("handler", ""))
        if handler is None:
            return await self.service(name, error="Choose a handler of this service.", form=form, status=400)
        key: str | None = None
        if svc.ty is not ServiceType.SERVICE:
            key = form.get("key", "")
            if not key:
                return await self.service(name, error="A key is required.", form=form, status=400)
        text = form.get("body", "").strip()
        if text:
            try:
                json.loads(text)
            except ValueError as e:
                return await self.service(name, error=f"The body is not JSON: {e}", form=form, status=400)
        elif handler.input_required:
            return await self.service(name, error="This handler needs an input.", form=form, status=400)
        idem = form.get("idempotency_key", "").strip() or None
        invocation = IngressInvocation(
            target=InvocationTarget(name, handler.name, key),
            body=text.encode(),
            headers=(("content-type", "application/json"),) if text else (),
            idempotency_key=idem,
            user_supplied_idempotency_key=idem is not None,
        )
        try:
            receipt = await self.core.send(invocation)
        except (core_api.BadRequest, core_api.Conflict, core_api.NotFound, core_api.Unavailable) as e:
            return await self.service(name, error=f"The invocation was refused: {e}", form=form, status=400)
        inv_id = receipt.invocation_id
        if form.get("mode") == "send":
            return await self.service(name, result=invoke_result(inv_id, sent=True), form=form)
        try:
            answer = await asyncio.wait_for(self.core.attach(ById(inv_id)), CALL_WAIT_S)
        except TimeoutError:
            return await self.service(
                name, result=invoke_result(inv_id, sent=False, pending=True), form=form
            )
        except core_api.NotFound:
            return await self.service(name, error="The invocation is gone.", form=form, status=404)
        outcome = answer.outcome
        if isinstance(outcome, Success):
            html = invoke_result(inv_id, sent=False, output=outcome.value)
        else:
            html = invoke_result(inv_id, sent=False, failure=f"[{outcome.code}] {outcome.message}")
        return await self.service(name, result=html, form=form)

    async def deployments(
        self, query: Mapping[str, str], *, error: str | None = None, uri: str = ""
    ) -> ConsoleReply:
        pins = await self._pins()
        rows = [
            {
                "id": d.id,
                "endpoint": redact_uri(d.uri),
                "created_at": ms_text(d.created_at_ms),
                "services": sorted(s.name for s in d.services),
                "sdk_version": d.sdk_version,
                "active": pins.get(d.id, (0, 0))[0],
                "total": pins.get(d.id, (0, 0))[1],
            }
            for d in sorted(await self.core.list_deployments(), key=lambda d: d.created_at_ms)
        ]
        flash = DONE.get(query.get("done", ""))
        error = error or FAILED.get(query.get("failed", ""))
        status = 400 if error and uri else 200
        return html_reply(status, deployments_page(rows, flash=flash, error=error, uri=uri))

    async def register(self, form: Mapping[str, str]) -> ConsoleReply:
        uri = form.get("uri", "").strip()
        if self._register is None:
            return await self.deployments({}, error="Registration is not available here.", uri=uri)
        if not uri:
            return await self.deployments({}, error="Enter the deployment's URI.", uri=" ")
        try:
            await self._register({"uri": uri, "force": form.get("force") == "true"})
        except Exception as e:  # the admin API's own refusals (AdminError, PlainError) carry `.message`
            message = getattr(e, "message", None) or str(e) or type(e).__name__
            return await self.deployments({}, error=f"Registration failed: {message}", uri=uri)
        return redirect(f"{BASE}/deployments?done=registered")

    async def remove_deployment(self, dep_id: str) -> ConsoleReply:
        known = {d.id for d in await self.core.list_deployments()}
        if dep_id not in known:
            return redirect(f"{BASE}/deployments?failed=nodeployment")
        # As `DELETE /deployments/{id}?force=true`: the only removal this server supports.
        await self.core.delete_deployment(dep_id)
        return redirect(f"{BASE}/deployments?done=removed")

    # ------------------------------------------------------------------ state

    def _keyed(self, service: str) -> core_api.ServiceSchema | ConsoleReply:
        svc = self.core.lookup_service(service)
        if svc is None:
            return html_reply(
                404, message_page("Not found", f"The requested service '{service}' does not exist")
            )
        return svc

    async def keys(self, service: str, after: str | None) -> ConsoleReply:
        svc = self._keyed(service)
        if isinstance(svc, ConsoleReply):
            return svc
        since = f" AND service_key > {sql_str(after)}" if after else ""
        where = f"service_name = {sql_str(service)}{since}"
        rows = await self.query(
            f"SELECT DISTINCT service_key FROM (SELECT service_key FROM state WHERE {where} "
            f"UNION ALL SELECT service_key FROM sys_promise WHERE {where}) "
            f"ORDER BY service_key LIMIT {KEYS_PAGE + 1}"
        )
        keys = [str(r["service_key"]) for r in rows]
        next_after = keys[KEYS_PAGE - 1] if len(keys) > KEYS_PAGE else None
        return html_reply(200, keys_page(service, keys[:KEYS_PAGE], after=after, next_after=next_after))

    async def _whole_state(self, service: str, key: str) -> list[tuple[str, bytes]]:
        rows = await self.query(
            "SELECT key, value FROM state "
            f"WHERE service_name = {sql_str(service)} AND service_key = {sql_str(key)} "
            f"ORDER BY key LIMIT {MAX_EDIT_KEYS + 1}"
        )
        return [(str(r["key"]), bytes.fromhex(str(r.get("value") or ""))) for r in rows]

    async def state(
        self,
        service: str,
        key: str,
        query: Mapping[str, str],
        *,
        error: str | None = None,
        status: int = 200,
    ) -> ConsoleReply:
        svc = self._keyed(service)
        if isinstance(svc, ConsoleReply):
            return svc
        after = query.get("after")
        # One page at a time, from the key after the last one shown: an object with many keys must not make
        # the query sort (and the page show) all of its values.
        since = f" AND key > {sql_str(after)}" if after else ""
        where = f"service_name = {sql_str(service)} AND service_key = {sql_str(key)}"
        rows = await self.query(
            f"SELECT key, value FROM state WHERE {where}{since} ORDER BY key LIMIT {STATE_PAGE + 1}"
        )
        more = len(rows) > STATE_PAGE
        rows = rows[:STATE_PAGE]
        next_after = str(rows[-1]["key"]) if more and rows else None
        # The version covers the whole state (what an edit replaces), read as digests rather than values.
        digests = await self.query(
            f"SELECT key, md5(value) AS h FROM state WHERE {where} ORDER BY key LIMIT {MAX_EDIT_KEYS + 1}"
        )
        editable = svc.ty is not ServiceType.SERVICE and len(digests) <= MAX_EDIT_KEYS
        version = state_version([(str(r["key"]), str(r.get("h") or "").encode()) for r in digests])
        promises: list[dict[str, Any]] = []
        if svc.ty is ServiceType.WORKFLOW:
            promises = await self.query(
                "SELECT key, completed, completion_success_value, completion_failure FROM sys_promise "
                f"WHERE {where} ORDER BY key LIMIT {STATE_PAGE}"
            )
        page = state_page(
            service,
            key,
            rows,
            after=after,
            next_after=next_after,
            version=version,
            promises=promises,
            editable=editable,
            flash=DONE.get(query.get("done", "")),
            error=error,
        )
        return html_reply(status, page)

    async def edit_state(self, service: str, key: str, form: Mapping[str, str]) -> ConsoleReply:
        svc = self._keyed(service)
        if isinstance(svc, ConsoleReply):
            return svc
        if svc.ty is ServiceType.SERVICE:
            return await self.state(service, key, {}, error="A service has no state.", status=400)
        name = form.get("name", "")
        if not name:
            return await self.state(service, key, {}, error="Name the state key.", status=400)
        current = await self._whole_state(service, key)
        if len(current) > MAX_EDIT_KEYS:
            return await self.state(service, key, {}, error="Too many keys to edit here.", status=400)
        digests = [(k, hashlib.md5(v).hexdigest().encode()) for k, v in current]
        if form.get("version", "") != state_version(digests):
            return await self.state(
                service,
                key,
                {},
                error="The state changed since the page was loaded; nothing was changed. Review and retry.",
                status=409,
            )
        new_state = dict(current)
        if form.get("op") == "delete":
            new_state.pop(name, None)
        else:
            try:
                new_state[name] = encode_value(form.get("value", ""), form.get("encoding", "json"))
            except ValueError as e:
                return await self.state(service, key, {}, error=str(e), status=400)
        # Same engine operation (and same whole-state semantics) as `POST /services/{name}/state`.
        await self.core.set_state(service, key, new_state)
        return redirect(f"{state_href(service, key)}?done=state")
