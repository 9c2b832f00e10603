"""Every ingress error, its status and its message, in one place. Pure code: no IO.

Ingress errors answer ``{"code":N,"message":"…","source":"ingress"}``; a terminal failure of the
invocation itself answers with the failure's own code and ``"source":"invocation"`` (see
:func:`failure_status`).
"""

from __future__ import annotations

from pyrestate.server import core_api

NOT_READY_STATUS = 470


class IngressError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"IngressError({self.status}, {self.message!r})"


def not_found() -> IngressError:
    return IngressError(404, "not found")


def bad_path(path: str) -> IngressError:
    return IngressError(400, f"bad path: {path}")


def bad_service_path() -> IngressError:
    return IngressError(
        400, "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler"
    )


def bad_awakeables_path() -> IngressError:
    return IngressError(
        400, "bad path, expected either /restate/awakeables/:id/resolve or /restate/awakeables/:id/reject"
    )


def bad_invocation_path() -> IngressError:
    return IngressError(
        400,
        "bad path, expected either /restate/invocation/:invocation_id/output or "
        "/restate/invocation/:invocation_id/attach or "
        "/restate/invocation/:invocation_target/:idempotency_key/output "
        "or /restate/invocation/:invocation_target/:idempotency_key/attach",
    )


def bad_workflow_path() -> IngressError:
    return IngressError(
        400,
        "bad path, expected either /restate/workflow/:workflow_name/:workflow_key/output or "
        "/restate/workflow/:workflow_name/:workflow_key/attach",
    )


def bad_restate_api_path() -> IngressError:
    return IngressError(
        400,
        "bad path, expected /restate/call/:service/[:key/]:handler or /restate/send/:service/[:key/]:handler",
    )


def bad_key_encoding(segment: str) -> IngressError:
    return IngressError(400, f"bad path, cannot decode key: {segment!r}")


def service_not_found(service: str) -> IngressError:
    return IngressError(
        404, f"service '{service}' not found, make sure to register the service before calling it."
    )


def handler_not_found(service: str, handler: str) -> IngressError:
    return IngressError(
        404,
        f"the service '{service}' exists, but the handler '{handler}' was not found, check that the handler "
        "exists in the latest registered service version.",
    )


def invocation_not_found() -> IngressError:
    return IngressError(404, "invocation not found")


def private_service() -> IngressError:
    return IngressError(400, "the invoked service is not public")


def bad_delay(reason: str) -> IngressError:
    return IngressError(400, f"bad delay query parameter, must be a ISO8601 duration: {reason}")


def delay_on_call() -> IngressError:
    return IngressError(
        400, "cannot use the delay query parameter with calls. The delay is supported only with sends"
    )


def idempotency_key_on_workflow() -> IngressError:
    return IngressError(
        400,
        "cannot use the idempotency key with workflow handlers. The handler invocation will already be "
        "idempotent by the workflow key itself.",
    )


def bad_header(name: str, reason: str) -> IngressError:
    return IngressError(400, f"bad header {name}: {reason}")


def bad_awakeable_id(text: str, reason: str) -> IngressError:
    return IngressError(400, f"bad awakeable id '{text}': {reason}")


def bad_invocation_id(text: str, reason: str) -> IngressError:
    return IngressError(400, f"bad invocation id '{text}': {reason}")


def input_validation(reason: str) -> IngressError:
    return IngressError(400, f"input validation error: {reason}")


def method_not_allowed() -> IngressError:
    return IngressError(405, "method not allowed")


def not_ready() -> IngressError:
    return IngressError(NOT_READY_STATUS, "the invocation exists but has not completed yet")


def payload_too_large(limit: int) -> IngressError:
    return IngressError(413, f"payload too large: the request body exceeds the limit of {limit} bytes")


def key_too_long(size: int, limit: int) -> IngressError:
    message = f"bad path, the object key is {size} bytes long, over the limit of {limit} bytes"
    return IngressError(400, message + " (key-size-limit)")


def too_many_headers(count: int, limit: int) -> IngressError:
    return IngressError(431, f"request header fields too large: {count} headers, over the limit of {limit}")


def headers_too_large(size: int, limit: int) -> IngressError:
    return IngressError(
        431, f"request header fields too large: {size} bytes of headers, over the limit of {limit} bytes"
    )


def unavailable() -> IngressError:
    return IngressError(503, "unavailable")


def internal(detail: str) -> IngressError:
    return IngressError(
        500,
        f"internal routing error: {detail}. The ingress was not able to acknowledge the invocation "
        "submission, and will not retry because the request is missing an 'idempotency-key'. Please note "
        "that the request may have been correctly submitted and executed.",
    )


def from_core(exc: BaseException, *, lookup: bool = False) -> IngressError:
    """The ingress answer for an exception raised by ServerCore.

    `lookup` marks attach/output requests, where NotFound means the invocation is unknown.
    """
    message = str(exc)
    if isinstance(exc, core_api.NotReady):
        return not_ready()
    if isinstance(exc, core_api.NotFound):
        return invocation_not_found() if lookup or not message else IngressError(404, message)
    if isinstance(exc, core_api.BadRequest):
        return IngressError(400, message or "bad request")
    if isinstance(exc, core_api.Conflict):
        return IngressError(409, message or "conflict")
    if isinstance(exc, core_api.Unavailable):
        return IngressError(503, message or "unavailable")
    return internal(message or type(exc).__name__)


def failure_status(code: int) -> int:
    """HTTP status of a terminal failure: its code when it is a valid status, else 500."""
    return code if 100 <= code <= 999 else 500
