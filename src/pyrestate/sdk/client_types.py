"""Types of the ingress client: the abstract clients, the send handle and the HTTP error."""

from __future__ import annotations

import abc
from datetime import timedelta
from typing import Any, TypeVar

from pyrestate.sdk.context import HandlerType

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


class HttpError(Exception):
    """The ingress answered with an HTTP status >= 400 (470 = the invocation has no output yet)."""

    def __init__(self, status_code: int, message: str, body: str | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.body = body


class RestateClientSendHandle:
    """What a send returns: the id of the invocation it started (or joined, for a repeated idempotency key).

    `status_code` is always 200, as in the official SDK. When the handle comes from a client, `attach()`
    waits for the invocation's result and `output()` returns it if already there (else HttpError 470).
    """

    def __init__(
        self,
        invocation_id: str,
        status_code: int,
        *,
        status: str | None = None,
        client: RestateClient | None = None,
        output_serde: Any = None,
    ) -> None:
        self.invocation_id = invocation_id
        self.status_code = status_code
        #: "Accepted" for a new invocation, "PreviouslyAccepted" when the idempotency key was seen before
        self.status = status
        self._client = client
        self._output_serde = output_serde

    def _bound(self) -> RestateClient:
        if self._client is None:
            raise RuntimeError("this send handle is not bound to a client")
        return self._client

    async def attach(self) -> Any:
        """Wait for the invocation to finish; its result, or HttpError carrying its failure."""
        return await self._bound().attach_invocation(self.invocation_id, serde=self._output_serde)

    async def output(self) -> Any:
        """The result if the invocation already finished, else HttpError with status 470."""
        return await self._bound().get_invocation_output(self.invocation_id, serde=self._output_serde)


class RestateScopedClient(abc.ABC):
    """Calls and sends within a scope (needs protocol V7 and flow control enabled on the server)."""

    @abc.abstractmethod
    async def service_call(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O: ...

    @abc.abstractmethod
    async def service_send(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle: ...

    @abc.abstractmethod
    async def object_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O: ...

    @abc.abstractmethod
    async def object_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle: ...

    @abc.abstractmethod
    async def workflow_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O: ...

    @abc.abstractmethod
    async def workflow_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle: ...


class RestateClient(abc.ABC):
    """A client of the Restate ingress, for code outside handlers."""

    @abc.abstractmethod
    def scope(self, scope: str) -> RestateScopedClient: ...

    @abc.abstractmethod
    async def service_call(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O: ...

    @abc.abstractmethod
    async def service_send(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle: ...

    @abc.abstractmethod
    async def object_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O: ...

    @abc.abstractmethod
    async def object_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle: ...

    @abc.abstractmethod
    async def workflow_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O: ...

    @abc.abstractmethod
    async def workflow_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle: ...

    @abc.abstractmethod
    async def generic_call(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> bytes: ...

    @abc.abstractmethod
    async def generic_send(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> RestateClientSendHandle: ...

    # Attach / output: not in the official SDK's client. Concrete here so that other implementations of
    # this ABC (written against the official one) keep working.

    async def attach_invocation(self, invocation_id: str, serde: Any = None) -> Any:
        raise NotImplementedError

    async def get_invocation_output(self, invocation_id: str, serde: Any = None) -> Any:
        raise NotImplementedError


__all__ = ["HttpError", "RestateClient", "RestateClientSendHandle", "RestateScopedClient"]
