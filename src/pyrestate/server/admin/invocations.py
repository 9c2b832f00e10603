"""`/invocations`: cancel, kill or purge (DELETE with a mode), and the PATCH commands (cancel, kill, purge,
purge-journal, pause, resume, restart-as-new)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyrestate.server import core_api
from pyrestate.server.admin.http import (
    AdminError,
    PlainError,
    Request,
    Response,
    method_not_allowed,
)
from pyrestate.server.core_api import (
    InvocationCommand,
)
from pyrestate.server.resource_ids import IdDecodeError, check_deployment_id, check_invocation_id

if TYPE_CHECKING:
    from pyrestate.server.admin.app import AdminApp

_COMMANDS = {c.value: c for c in InvocationCommand}
_DELETE_MODES = {
    "cancel": InvocationCommand.CANCEL,
    "kill": InvocationCommand.KILL,
    "purge": InvocationCommand.PURGE,
}


async def route(app: AdminApp, req: Request) -> Response:
    query = req.query
    match req.path:
        case [inv_id]:
            if req.method != "DELETE":
                return method_not_allowed("DELETE")
            mode = query.get("mode", "cancel").lower()
            command = _DELETE_MODES.get(mode)
            if command is None:
                raise PlainError(
                    400,
                    f"Failed to deserialize query string: unknown variant `{query.get('mode')}`"
                    ", expected one of `Cancel`, `Kill`, `Purge`",
                )
            await _invocation_command(app, inv_id, command, None)
            return Response(202)
        case [inv_id, verb]:
            if req.method != "PATCH":
                return method_not_allowed("PATCH")
            if verb == "restart-as-new":
                return await _restart_as_new(app, inv_id, query)
            command = _COMMANDS.get(verb)
            if command is None:
                return Response(404, None)
            outcome = await _invocation_command(app, inv_id, command, _deployment_choice(query))
            return Response(202 if outcome is core_api.CommandOutcome.ACCEPTED else 200)
        case _:
            return Response(404)


def _deployment_choice(query: dict[str, str]) -> str | None:
    """`deployment`: "keep", "latest" (any case, as Restate's enum reads them) or a deployment id."""
    value = query.get("deployment")
    if value is None or value.lower() in ("keep", "latest"):
        return None if value is None else value.lower()
    try:
        return check_deployment_id(value)
    except IdDecodeError as e:
        raise AdminError(400, f"The query parameter 'deployment' is invalid. Reason: {e.reason}") from None


def _u32(query: dict[str, str], name: str) -> int | None:
    """A u32 query parameter, refused with the words of Restate's query-string parser."""
    text = query.get(name)
    if text is None:
        return None
    reason = None
    if text == "":
        reason = "cannot parse integer from empty string"
    elif not (text.isascii() and text.isdigit()):
        reason = "invalid digit found in string"
    elif int(text) > 0xFFFFFFFF:
        reason = "number too large to fit in target type"
    if reason is not None:
        raise PlainError(400, f"Failed to deserialize query string: {name}: {reason}")
    return int(text)


async def _restart_as_new(app: AdminApp, inv_id: str, query: dict[str, str]) -> Response:
    from_index = _u32(query, "from")
    deployment = _deployment_choice(query)
    try:
        check_invocation_id(inv_id)
    except IdDecodeError as e:
        raise AdminError(400, f"The request field 'invocation_id' is invalid. Reason: {e.reason}") from None
    try:
        new_id = await app.core.restart_as_new(inv_id, from_index=from_index, deployment=deployment)
    except core_api.NotFound:
        raise AdminError(404, f"The requested invocation '{inv_id}' does not exist") from None
    except core_api.Conflict as e:
        raise AdminError(409, str(e)) from None
    except core_api.BadRequest as e:
        raise AdminError(400, str(e)) from None
    except core_api.Refused as e:
        raise AdminError(e.status, str(e)) from None
    return Response(200, {"new_invocation_id": new_id})


async def _invocation_command(
    app: AdminApp, inv_id: str, command: InvocationCommand, deployment_id: str | None
) -> core_api.CommandOutcome:
    try:
        check_invocation_id(inv_id)
    except IdDecodeError as e:
        raise AdminError(400, f"The request field 'invocation_id' is invalid. Reason: {e.reason}") from None
    try:
        return await app.core.invocation_command(inv_id, command, deployment_id=deployment_id)
    except core_api.NotFound:
        raise AdminError(404, f"The requested invocation '{inv_id}' does not exist") from None
    except core_api.Conflict as e:
        if str(e):
            raise AdminError(409, str(e)) from None
        if command in (InvocationCommand.PURGE, InvocationCommand.PURGE_JOURNAL):
            raise AdminError(409, f"The invocation '{inv_id}' is not yet completed.") from None
        raise AdminError(409, f"The invocation '{inv_id}' was already completed.") from None
    except core_api.BadRequest as e:
        raise AdminError(400, str(e)) from None
    except core_api.Unavailable as e:
        raise AdminError(503, str(e) or "unavailable") from None
