"""`/invocations`: cancel, kill or purge (DELETE with a mode), and the PATCH commands (cancel, kill, purge,
purge-journal, pause, resume)."""

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
from pyrestate.server.resource_ids import IdDecodeError, check_invocation_id

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
            command = _COMMANDS.get(verb)
            if command is None:
                if verb == "restart-as-new":
                    raise AdminError(501, "restart-as-new is not supported by this server")
                return Response(404, None)
            outcome = await _invocation_command(app, inv_id, command, query.get("deployment"))
            return Response(202 if outcome is core_api.CommandOutcome.ACCEPTED else 200)
        case _:
            return Response(404)


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
