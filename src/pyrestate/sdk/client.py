"""Ingress client for code outside handlers: call and send to services, objects and workflows, then
attach to (or read the output of) an invocation by its id, its idempotency key or its workflow key."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from pyrestate.sdk.client_types import HttpError, RestateClient, RestateClientSendHandle, RestateScopedClient
from pyrestate.sdk.context import HandlerType
from pyrestate.sdk.serde import BytesSerde, JsonSerde, Serde
from pyrestate.sdk.service import handler_from_callable

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


class ConnectError(Exception):
    """No ingress to connect to."""


def _seg(value: str) -> str:
    # Keys may hold '/', '?' or '#'; quote each path segment so they reach the server intact.
    return quote(value, safe="")


def _send_handle(
    data: Any, client: Client | None = None, output_serde: Serde[Any] | None = None
) -> RestateClientSendHandle:
    body = data if isinstance(data, dict) else {}
    return RestateClientSendHandle(
        body.get("invocationId", ""),
        200,
        status=body.get("status"),
        client=client,
        output_serde=output_serde,
    )


class Client(RestateClient):
    """The ingress client `create_client` yields."""

    def __init__(
        self, client: httpx.AsyncClient, headers: dict[str, str] | None = None, journal_codec: Any = None
    ) -> None:
        if journal_codec is not None:
            raise NotImplementedError("journal value codecs are not supported by this SDK")
        self.headers = headers or {}
        self.client = client
        self.journal_codec = None

    def scope(self, scope: str) -> RestateScopedClient:
        return ScopedClient(self, scope)

    # -- the request builders

    async def do_call(
        self,
        tpe: HandlerType[I, O],
        parameter: I,
        key: str | None = None,
        send_delay: timedelta | None = None,
        send: bool = False,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        force_json_output: bool = False,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> O:
        target = handler_from_callable(tpe)
        io = target.handler_io
        content_type = None if io.input_type is not None and io.input_type.is_void else io.content_type
        if headers is None:
            headers = {}
        if headers.get("Content-Type") is None and content_type is not None:
            headers["Content-Type"] = content_type
        output_serde: Serde[Any] = io.output_serde if not force_json_output else JsonSerde()
        return typing.cast(
            O,
            await self.do_raw_call(
                service=target.service_tag.name,
                handler=target.name,
                input_param=parameter,
                input_serde=io.input_serde,
                output_serde=output_serde,
                key=key,
                send_delay=send_delay,
                send=send,
                idempotency_key=idempotency_key,
                headers=headers,
                scope=scope,
                limit_key=limit_key,
            ),
        )

    async def do_raw_call(
        self,
        service: str,
        handler: str,
        input_param: I,
        input_serde: Serde[I],
        output_serde: Serde[O],
        key: str | None = None,
        send_delay: timedelta | None = None,
        send: bool = False,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> O:
        parameter = input_serde.serialize(input_param)
        delay = None if send_delay is None else int(send_delay.total_seconds() * 1000)
        res = await self.post(
            service=service,
            handler=handler,
            send=send,
            content=parameter,
            headers=list(headers.items()) if headers is not None else [],
            key=key,
            delay=delay,
            idempotency_key=idempotency_key,
            scope=scope,
            limit_key=limit_key,
        )
        return typing.cast(O, output_serde.deserialize(res))

    async def post(
        self,
        /,
        service: str,
        handler: str,
        send: bool,
        content: bytes,
        headers: list[tuple[str, str]] | None = None,
        key: str | None = None,
        delay: int | None = None,
        idempotency_key: str | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> bytes:
        """POST to the ingress: `[restate/scope/{scope}/{call|send}/]{service}[/{key}]/{handler}[/send]`."""
        target = _seg(service) + (f"/{_seg(key)}" if key else "") + f"/{_seg(handler)}"
        if scope is not None:
            path = f"restate/scope/{_seg(scope)}/{'send' if send else 'call'}/{target}"
        else:
            path = target + ("/send" if send else "")
        if send and delay is not None:
            # The ingress wants a unit ("800ms"); a bare number is refused with 400.
            path += f"?delay={delay}ms"
        request_headers = dict(headers) if headers is not None else {}
        if idempotency_key is not None:
            request_headers["Idempotency-Key"] = idempotency_key
        if limit_key is not None:
            request_headers["x-restate-limit-key"] = limit_key
        res = await self.client.post(path, headers=request_headers, content=content)
        return _checked(res)

    # -- calls and sends

    @typing.final
    async def service_call(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        return await self.do_call(tpe, arg, idempotency_key=idempotency_key, headers=headers)

    async def service_send(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle:
        return await self._send(tpe, arg, None, send_delay, idempotency_key, headers)

    async def object_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        return await self.do_call(tpe, arg, key, idempotency_key=idempotency_key, headers=headers)

    async def object_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle:
        return await self._send(tpe, arg, key, send_delay, idempotency_key, headers)

    async def workflow_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        return await self.object_call(tpe, key, arg, idempotency_key=idempotency_key, headers=headers)

    async def workflow_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle:
        return await self.object_send(
            tpe, key, arg, send_delay=send_delay, idempotency_key=idempotency_key, headers=headers
        )

    async def _send(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        key: str | None,
        send_delay: timedelta | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> RestateClientSendHandle:
        data: Any = await self.do_call(
            tpe,
            parameter=arg,
            key=key,
            send=True,
            send_delay=send_delay,
            idempotency_key=idempotency_key,
            headers=headers,
            force_json_output=True,
            scope=scope,
            limit_key=limit_key,
        )
        return _send_handle(data, self, handler_from_callable(tpe).handler_io.output_serde)

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
    ) -> bytes:
        serde = BytesSerde()
        return await self.do_raw_call(
            service=service,
            handler=handler,
            input_param=arg,
            input_serde=serde,
            output_serde=serde,
            key=key,
            idempotency_key=idempotency_key,
            headers=headers,
            scope=scope,
            limit_key=limit_key,
        )

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
    ) -> RestateClientSendHandle:
        data: Any = await self.do_raw_call(
            service=service,
            handler=handler,
            input_param=arg,
            input_serde=BytesSerde(),
            output_serde=JsonSerde[Any](),
            key=key,
            send_delay=send_delay,
            send=True,
            idempotency_key=idempotency_key,
            headers=headers,
            scope=scope,
            limit_key=limit_key,
        )
        return _send_handle(data, self, BytesSerde())

    # -- attach / output ("latch on" to an invocation started elsewhere)
    #
    # attach waits for the invocation to finish; output answers at once, raising HttpError 470 while the
    # invocation is still running. A failed invocation raises HttpError with its failure code.

    async def attach_invocation(self, invocation_id: str, serde: Serde[Any] | None = None) -> Any:
        """The result of the invocation `invocation_id` (JSON-decoded unless `serde` says otherwise)."""
        return await self._get(f"restate/invocation/{_seg(invocation_id)}/attach", serde)

    async def get_invocation_output(self, invocation_id: str, serde: Serde[Any] | None = None) -> Any:
        return await self._get(f"restate/invocation/{_seg(invocation_id)}/output", serde)

    async def service_attach(self, tpe: HandlerType[I, O], idempotency_key: str) -> O:
        """Attach to the invocation of service handler `tpe` started with `idempotency_key`."""
        return typing.cast(O, await self._idempotent(tpe, None, idempotency_key, "attach"))

    async def service_output(self, tpe: HandlerType[I, O], idempotency_key: str) -> O:
        return typing.cast(O, await self._idempotent(tpe, None, idempotency_key, "output"))

    async def object_attach(self, tpe: HandlerType[I, O], key: str, idempotency_key: str) -> O:
        return typing.cast(O, await self._idempotent(tpe, key, idempotency_key, "attach"))

    async def object_output(self, tpe: HandlerType[I, O], key: str, idempotency_key: str) -> O:
        return typing.cast(O, await self._idempotent(tpe, key, idempotency_key, "output"))

    async def workflow_attach(self, tpe: HandlerType[I, O], key: str) -> O:
        """Attach to the run of workflow `key`; `tpe` is the workflow's main handler."""
        target = handler_from_callable(tpe)
        path = f"restate/workflow/{_seg(target.service_tag.name)}/{_seg(key)}/attach"
        return typing.cast(O, await self._get(path, target.handler_io.output_serde))

    async def workflow_output(self, tpe: HandlerType[I, O], key: str) -> O:
        target = handler_from_callable(tpe)
        path = f"restate/workflow/{_seg(target.service_tag.name)}/{_seg(key)}/output"
        return typing.cast(O, await self._get(path, target.handler_io.output_serde))

    async def _idempotent(
        self, tpe: HandlerType[Any, Any], key: str | None, idempotency_key: str, what: str
    ) -> Any:
        target = handler_from_callable(tpe)
        parts = [target.service_tag.name, *([key] if key is not None else []), target.name, idempotency_key]
        path = "restate/invocation/" + "/".join(_seg(p) for p in parts) + f"/{what}"
        return await self._get(path, target.handler_io.output_serde)

    async def _get(self, path: str, serde: Serde[Any] | None) -> Any:
        res = await self.client.get(path, timeout=None if path.endswith("/attach") else self.client.timeout)
        body = _checked(res)
        return (serde if serde is not None else JsonSerde[Any]()).deserialize(body)


def _checked(res: httpx.Response) -> bytes:
    if res.status_code >= 400:
        raise HttpError(res.status_code, res.reason_phrase, res.text)
    return res.content


class ScopedClient(RestateScopedClient):
    """`client.scope(scope)`: every call carries the scope and an optional per-call limit key."""

    def __init__(self, client: Client, scope_key: str) -> None:
        self.client = client
        self.scope_key = scope_key

    async def service_call(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        return await self.client.do_call(
            tpe,
            arg,
            idempotency_key=idempotency_key,
            headers=headers,
            scope=self.scope_key,
            limit_key=limit_key,
        )

    async def service_send(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle:
        return await self.client._send(
            tpe, arg, None, send_delay, idempotency_key, headers, self.scope_key, limit_key
        )

    async def object_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        return await self.client.do_call(
            tpe,
            arg,
            key,
            idempotency_key=idempotency_key,
            headers=headers,
            scope=self.scope_key,
            limit_key=limit_key,
        )

    async def object_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle:
        return await self.client._send(
            tpe, arg, key, send_delay, idempotency_key, headers, self.scope_key, limit_key
        )

    async def workflow_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        return await self.object_call(tpe, key, arg, limit_key, idempotency_key, headers)

    async def workflow_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle:
        return await self.object_send(tpe, key, arg, send_delay, limit_key, idempotency_key, headers)


def resolve_ingress(ingress: str | None, headers: dict[str, str] | None) -> tuple[str, dict[str, str] | None]:
    """The ingress URL and default headers. Restate Cloud ingress keys (RESTATE_INGRESS_KEY) are not
    supported: without `ingress` this raises ConnectError."""
    if ingress:
        return ingress, headers
    raise ConnectError(
        "create_client(): ingress is required: pass the ingress URL, e.g. http://127.0.0.1:8080"
    )


@asynccontextmanager
async def create_client(
    ingress: str | None = None, headers: dict[str, str] | None = None, journal_value_codec: Any = None
) -> AsyncIterator[RestateClient]:
    """A client of the ingress at `ingress`, sending `headers` with every request:

    async with create_client("http://127.0.0.1:8080") as client:
        await client.service_call(greet, "world")
    """
    if journal_value_codec is not None:
        raise NotImplementedError("journal value codecs are not supported by this SDK")
    url, default_headers = resolve_ingress(ingress, headers)
    async with httpx.AsyncClient(base_url=url, headers=default_headers, http2=True) as http_client:
        yield Client(http_client, default_headers)


__all__ = ["Client", "ConnectError", "ScopedClient", "create_client", "resolve_ingress"]
