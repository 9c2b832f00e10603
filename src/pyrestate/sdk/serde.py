"""Serializers: JSON by default, raw bytes, pydantic models and dataclasses picked from type hints."""

from __future__ import annotations

import abc
import dataclasses
import json
import typing
from typing import Any, Generic, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


def _pydantic_base() -> type | None:
    try:
        from pydantic import BaseModel  # type: ignore[import-not-found, unused-ignore]

        return typing.cast(type, BaseModel)
    except ImportError:
        return None


PydanticBaseModel = _pydantic_base()


def is_pydantic(annotation: Any) -> bool:
    if PydanticBaseModel is None:
        return False
    try:
        return isinstance(annotation, type) and issubclass(annotation, PydanticBaseModel)
    except TypeError:
        return False


def _from_jsonable(hint: Any, data: Any) -> Any:
    """Rebuild dataclasses (recursively) from decoded JSON; other types pass through."""
    if data is None:
        return None
    if dataclasses.is_dataclass(hint) and isinstance(hint, type) and isinstance(data, dict):
        hints = get_type_hints(hint)
        kwargs = {
            f.name: _from_jsonable(hints.get(f.name, Any), data[f.name])
            for f in dataclasses.fields(hint)
            if f.name in data
        }
        return hint(**kwargs)
    origin = get_origin(hint)
    args = get_args(hint)
    if origin is list and args and isinstance(data, list):
        return [_from_jsonable(args[0], x) for x in data]
    if origin is dict and len(args) == 2 and isinstance(data, dict):
        return {k: _from_jsonable(args[1], v) for k, v in data.items()}
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _from_jsonable(non_none[0], data)
    if is_pydantic(hint):
        return hint.model_validate(data)
    return data


def _to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if PydanticBaseModel is not None and isinstance(obj, PydanticBaseModel):
        return obj.model_dump(mode="json")  # type: ignore[attr-defined]
    return obj


class Serde(Generic[T], abc.ABC):
    @abc.abstractmethod
    def deserialize(self, buf: bytes) -> T | None: ...

    @abc.abstractmethod
    def serialize(self, obj: T | None) -> bytes: ...


class BytesSerde(Serde[bytes]):
    def deserialize(self, buf: bytes) -> bytes | None:
        return buf

    def serialize(self, obj: bytes | None) -> bytes:
        return b"" if obj is None else bytes(obj)


class JsonSerde(Serde[I]):
    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        return typing.cast(I, json.loads(buf))

    def serialize(self, obj: I | None) -> bytes:
        if obj is None:
            return b""
        return json.dumps(obj).encode("utf-8")


class DefaultSerde(Serde[I]):
    """JSON; with a type hint, pydantic models and dataclasses are rebuilt on the way in."""

    def __init__(self, type_hint: type[I] | None = None) -> None:
        super().__init__()
        self.type_hint = type_hint

    def with_maybe_type(self, type_hint: type[I] | None = None) -> DefaultSerde[I]:
        return DefaultSerde(type_hint)

    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        hint = self.type_hint
        if hint is not None and is_pydantic(hint):
            return typing.cast(I, hint.model_validate_json(buf))  # type: ignore[attr-defined]
        data = json.loads(buf)
        if hint is None or hint is Any:
            return typing.cast(I, data)
        return typing.cast(I, _from_jsonable(hint, data))

    def serialize(self, obj: I | None) -> bytes:
        if obj is None:
            return b""
        if PydanticBaseModel is not None and isinstance(obj, PydanticBaseModel):
            model: Any = obj
            return typing.cast(bytes, model.model_dump_json().encode("utf-8"))
        return json.dumps(obj, default=_to_jsonable).encode("utf-8")


class PydanticJsonSerde(Serde[I]):
    def __init__(self, model: Any) -> None:
        self.model = model

    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        return typing.cast(I, self.model.model_validate_json(buf))

    def serialize(self, obj: I | None) -> bytes:
        if obj is None:
            return b""
        dumped: Any = obj.model_dump_json()  # type: ignore[attr-defined]
        return typing.cast(bytes, dumped.encode("utf-8"))


__all__ = [
    "BytesSerde",
    "DefaultSerde",
    "JsonSerde",
    "PydanticJsonSerde",
    "Serde",
    "is_pydantic",
]
