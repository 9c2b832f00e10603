"""Service definitions: Service, VirtualObject, Workflow and their handler decorators."""

# Defaults such as `serde=DefaultSerde()` are part of the official API's signatures.
# ruff: noqa: B008

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pyrestate.sdk.serde import DefaultSerde, PydanticJsonSerde, Serde, is_pydantic

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
T = TypeVar("T")

_HANDLER_ATTR = "__pyrestate_handler__"


@dataclass
class InvocationRetryPolicy:
    """Retry policy the server applies to failed attempts of a handler (manifest v4 `retryPolicy*`)."""

    initial_interval: timedelta | None = None
    exponentiation_factor: float | None = None
    max_interval: timedelta | None = None
    max_attempts: int | None = None
    on_max_attempts: Literal["pause", "kill"] | None = None


@dataclass
class ServiceTag:
    kind: Literal["object", "service", "workflow"]
    name: str
    description: str | None = None
    metadata: dict[str, str] | None = None


@dataclass
class TypeHint(typing.Generic[T]):
    annotation: Any = None
    is_void: bool = False
    generate_json_schema: Callable[[], dict[str, Any]] | None = None


@dataclass
class HandlerIO(typing.Generic[I, O]):
    accept: str
    content_type: str
    input_serde: Serde[I]
    output_serde: Serde[O]
    input_type: TypeHint[I] | None = None
    output_type: TypeHint[O] | None = None


def extract_core_type(annotation: Any) -> tuple[Literal["optional", "simple"], Any]:
    """Optional[T] -> ("optional", T); anything else -> ("simple", annotation)."""
    if annotation is None:
        return "simple", annotation
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin in (UnionType, Union) and len(args) == 2 and type(None) in args:
        return "optional", args[0] if args[1] is type(None) else args[1]
    return "simple", annotation


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    t = schema.get("type")
    if t is None:
        schema["type"] = ["null"]
    elif isinstance(t, list):
        if "null" not in t:
            t.append("null")
    elif t != "null":
        schema["type"] = [t, "null"]
    return schema


def _type_hint_io(annotation: Any, serde: Serde[Any]) -> tuple[TypeHint[Any], Serde[Any]]:
    kind, core = extract_core_type(annotation)
    hint: TypeHint[Any] = TypeHint(annotation=core)
    if is_pydantic(core):

        def gen() -> dict[str, Any]:
            schema: dict[str, Any] = core.model_json_schema(mode="serialization")
            return _nullable(schema) if kind == "optional" else schema

        hint.generate_json_schema = gen
        if isinstance(serde, DefaultSerde):
            serde = PydanticJsonSerde(core)
    elif isinstance(serde, DefaultSerde) and isinstance(core, type) and dataclasses.is_dataclass(core):
        serde = DefaultSerde(core)
    return hint, serde


def type_hint_to_json_schema(type_hint: Any) -> Any:
    """The JSON schema the official SDK derives from plain Python type hints (`True` = anything)."""
    origin = get_origin(type_hint) or type_hint
    args = get_args(type_hint)
    if origin is str:
        return {"type": "string"}
    if origin is int:
        return {"type": "integer"}
    if origin is float:
        return {"type": "number"}
    if origin is bool:
        return {"type": "boolean"}
    if origin is list:
        return {"type": "array", "items": type_hint_to_json_schema(args[0] if args else Any)}
    if origin is dict:
        return {"type": "object"}
    if origin is None:
        return {"type": "null"}
    return True


def json_schema_from_type_hint(hint: TypeHint[Any] | None) -> Any:
    if not hint or not hint.annotation:
        return None
    if hint.generate_json_schema is not None:
        return hint.generate_json_schema()
    return type_hint_to_json_schema(hint.annotation)


@dataclass
class Handler(typing.Generic[I, O]):
    service_tag: ServiceTag
    handler_io: HandlerIO[I, O]
    kind: Literal["exclusive", "shared", "workflow"] | None
    name: str
    fn: Callable[..., Any]
    arity: int
    description: str | None = None
    metadata: dict[str, str] | None = None
    inactivity_timeout: timedelta | None = None
    abort_timeout: timedelta | None = None
    journal_retention: timedelta | None = None
    idempotency_retention: timedelta | None = None
    workflow_retention: timedelta | None = None
    enable_lazy_state: bool | None = None
    state_preload: bool | list[str] | None = None
    ingress_private: bool | None = None
    invocation_retry_policy: InvocationRetryPolicy | None = None
    context_managers: list[Callable[[], typing.AsyncContextManager[None]]] | None = None


def handler_from_callable(fn: Any) -> Handler[Any, Any]:
    try:
        return typing.cast(Handler[Any, Any], vars(fn)[_HANDLER_ATTR])
    except (KeyError, TypeError):
        raise ValueError("Handler not found: pass a function decorated with @<service>.handler()") from None


def _check_preload(state_preload: Any, enable_lazy_state: Any) -> None:
    if state_preload is not None and enable_lazy_state is not None:
        raise ValueError("set either state_preload or the deprecated enable_lazy_state, not both")


class _ServiceBase:
    service_tag: ServiceTag
    handlers: dict[str, Handler[Any, Any]]

    def __init__(
        self,
        kind: Literal["object", "service", "workflow"],
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]] | None = None,
    ) -> None:
        _check_preload(state_preload, enable_lazy_state)
        self.service_tag = ServiceTag(kind, name, description, metadata)
        self.handlers = {}
        self.inactivity_timeout = inactivity_timeout
        self.abort_timeout = abort_timeout
        self.journal_retention = journal_retention
        self.idempotency_retention = idempotency_retention
        self.enable_lazy_state = enable_lazy_state
        self.state_preload = state_preload
        self.ingress_private = ingress_private
        self.invocation_retry_policy = invocation_retry_policy
        self.context_managers = invocation_context_managers

    @property
    def name(self) -> str:
        return self.service_tag.name

    def _add(
        self,
        *,
        name: str | None,
        kind: Literal["exclusive", "shared", "workflow"] | None,
        accept: str,
        content_type: str,
        input_serde: Serde[Any],
        output_serde: Serde[Any],
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]] | None,
        **options: Any,
    ) -> Callable[[T], T]:
        def wrapper(fn: Any) -> Any:
            @wraps(fn)
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                return fn(*args, **kwargs)

            signature = inspect.signature(fn, eval_str=True)
            params = list(signature.parameters.values())
            if not params:
                raise ValueError("Handler must have at least one parameter")
            handler_name = name or fn.__name__
            io: HandlerIO[Any, Any] = HandlerIO(accept, content_type, input_serde, output_serde)
            if len(params) == 1:
                io.input_type = TypeHint(is_void=True)
            else:
                io.input_type, io.input_serde = _type_hint_io(params[-1].annotation, input_serde)
            ret = signature.return_annotation
            if ret is None or ret is inspect.Signature.empty:
                io.output_type = TypeHint(is_void=True)
            else:
                io.output_type, io.output_serde = _type_hint_io(ret, output_serde)
            managers = (self.context_managers or []) + (invocation_context_managers or []) or None
            _check_preload(options.get("state_preload"), options.get("enable_lazy_state"))
            h: Handler[Any, Any] = Handler(
                service_tag=self.service_tag,
                handler_io=io,
                kind=kind,
                name=handler_name,
                fn=wrapped,
                arity=len(params),
                description=inspect.getdoc(fn),
                context_managers=managers,
                **options,
            )
            if handler_name in self.handlers:
                raise ValueError(f"Handler {handler_name} already exists in {self.name}")
            self.handlers[handler_name] = h
            vars(wrapped)[_HANDLER_ATTR] = h
            return wrapped

        return typing.cast(Callable[[T], T], wrapper)


class Service(_ServiceBase):
    """A stateless service."""

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]] | None = None,
    ) -> None:
        super().__init__(
            "service",
            name,
            description,
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            None,
            None,
            ingress_private,
            invocation_retry_policy,
            invocation_context_managers,
        )

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[I] = DefaultSerde(),
        output_serde: Serde[O] = DefaultSerde(),
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]] | None = None,
    ) -> Callable[[T], T]:
        return self._add(
            name=name,
            kind=None,
            accept=accept,
            content_type=content_type,
            input_serde=input_serde,
            output_serde=output_serde,
            invocation_context_managers=invocation_context_managers,
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )


class VirtualObject(_ServiceBase):
    """A keyed service with exclusive and shared handlers and durable K/V state."""

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]] | None = None,
    ) -> None:
        super().__init__(
            "object",
            name,
            description,
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            enable_lazy_state,
            state_preload,
            ingress_private,
            invocation_retry_policy,
            invocation_context_managers,
        )

    def handler(
        self,
        name: str | None = None,
        kind: Literal["exclusive", "shared"] | None = "exclusive",
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[I] = DefaultSerde(),
        output_serde: Serde[O] = DefaultSerde(),
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]] | None = None,
    ) -> Callable[[T], T]:
        return self._add(
            name=name,
            kind=kind,
            accept=accept,
            content_type=content_type,
            input_serde=input_serde,
            output_serde=output_serde,
            invocation_context_managers=invocation_context_managers,
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            enable_lazy_state=enable_lazy_state,
            state_preload=state_preload,
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )


class Workflow(_ServiceBase):
    """A keyed service whose `main` handler runs once per key; other handlers are shared."""

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]] | None = None,
    ) -> None:
        super().__init__(
            "workflow",
            name,
            description,
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            enable_lazy_state,
            state_preload,
            ingress_private,
            invocation_retry_policy,
            invocation_context_managers,
        )

    def main(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[I] = DefaultSerde(),
        output_serde: Serde[O] = DefaultSerde(),
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        workflow_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]] | None = None,
    ) -> Callable[[T], T]:
        return self._add(
            name=name,
            kind="workflow",
            accept=accept,
            content_type=content_type,
            input_serde=input_serde,
            output_serde=output_serde,
            invocation_context_managers=invocation_context_managers,
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            workflow_retention=workflow_retention,
            enable_lazy_state=enable_lazy_state,
            state_preload=state_preload,
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[I] = DefaultSerde(),
        output_serde: Serde[O] = DefaultSerde(),
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]] | None = None,
    ) -> Callable[[T], T]:
        return self._add(
            name=name,
            kind="shared",
            accept=accept,
            content_type=content_type,
            input_serde=input_serde,
            output_serde=output_serde,
            invocation_context_managers=invocation_context_managers,
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            enable_lazy_state=enable_lazy_state,
            state_preload=state_preload,
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )


AnyService = Service | VirtualObject | Workflow
