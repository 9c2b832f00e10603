"""The endpoint manifest (answer to `GET /discover`), discovery versions 1 to 4. Pure code.

The model holds the newest (v4) shape. `to_json(version)` renders what a caller that only accepts `version`
understands: informational fields newer than it (documentation/metadata before v2, lambdaCompression before
v4) are dropped, while behavioural options that cannot be expressed (v3 options before v3, retry policy
before v4) raise ManifestError, as the official SDK does. `from_json` validates like the server's
registration: names, enums, ranges, required fields, and no unknown fields anywhere.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

from pyrestate.protocol.versions import MAX_DISCOVERY_VERSION

JsonValue = Any  # a JSON document as produced by json.loads

SERVICE_NAME_RE = re.compile(r"([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9._-]*")
HANDLER_NAME_RE = re.compile(r"([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9_]*")
_MAX_PROTOCOL_VERSION_VALUE = 2**31 - 1


class ManifestError(ValueError):
    """The manifest is invalid, or cannot be expressed in the requested discovery version."""


class ProtocolMode(enum.StrEnum):
    BIDI_STREAM = "BIDI_STREAM"
    REQUEST_RESPONSE = "REQUEST_RESPONSE"


class _Kind(enum.StrEnum):
    """The value is the manifest's spelling (VIRTUAL_OBJECT); the admin API, the invocation records and the
    stored schemas use Restate's camel-case spelling (VirtualObject)."""

    @property
    def admin_name(self) -> str:
        return _ADMIN_NAME[self]

    @classmethod
    def from_admin_name(cls, name: str) -> Self:
        member = _BY_ADMIN_NAME.get((cls, name))
        if member is None:
            raise ValueError(f"{name!r} is not a {cls.__name__}")
        return member  # type: ignore[return-value]  # keyed by its own class


class ServiceType(_Kind):
    SERVICE = "SERVICE"
    VIRTUAL_OBJECT = "VIRTUAL_OBJECT"
    WORKFLOW = "WORKFLOW"


class HandlerType(_Kind):
    WORKFLOW = "WORKFLOW"
    EXCLUSIVE = "EXCLUSIVE"
    SHARED = "SHARED"


# Looked up on every invocation record written or read: computed once. (ServiceType.WORKFLOW equals
# HandlerType.WORKFLOW as a string, so they share their entry in _ADMIN_NAME; both are "Workflow".)
_ADMIN_NAME: dict[_Kind, str] = {
    m: "".join(w.capitalize() for w in m.value.split("_")) for c in (ServiceType, HandlerType) for m in c
}
_BY_ADMIN_NAME: dict[tuple[type[_Kind], str], _Kind] = {
    (c, _ADMIN_NAME[m]): m for c in (ServiceType, HandlerType) for m in c
}


class RetryOnMaxAttempts(enum.StrEnum):
    PAUSE = "PAUSE"
    KILL = "KILL"


# ---------------------------------------------------------------------------------------------------------
# value checkers: (value, path) -> converted value, raising ManifestError naming the path

_E = TypeVar("_E", bound=enum.StrEnum)
_Check = Callable[[Any, str], Any]


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ManifestError(f"{path}: expected a string, got {_jtype(value)}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ManifestError(f"{path}: expected a boolean, got {_jtype(value)}")
    return value


def _uint(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(f"{path}: expected an integer, got {_jtype(value)}")
    if value < 0:
        raise ManifestError(f"{path}: must be >= 0, got {value}")
    return value


def _number(value: Any, path: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ManifestError(f"{path}: expected a finite number, got {value!r}")
    return value


def _metadata(value: Any, path: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ManifestError(f"{path}: expected an object of strings, got {_jtype(value)}")
    for k, v in value.items():
        _str(v, f"{path}.{k}")
    return dict(value)


def _any_json(value: Any, path: str) -> JsonValue:
    return value


def _enum(cls: type[_E]) -> Callable[[Any, str], _E]:
    def check(value: Any, path: str) -> _E:
        try:
            return cls(_str(value, path))
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise ManifestError(f"{path}: {value!r} is not one of {allowed}") from None

    return check


def _jtype(value: Any) -> str:
    if value is None:
        return "null"
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


_JSON_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


# ---------------------------------------------------------------------------------------------------------
# field tables


@dataclass(frozen=True, slots=True)
class _Field:
    key: str  # JSON name
    attr: str  # Python attribute
    check: _Check
    since: int = 1  # first discovery version that has the field
    #: below `since`: drop silently (informational) or refuse (changes behaviour)
    droppable: bool = False


def _doc_fields() -> list[_Field]:
    return [
        _Field("documentation", "documentation", _str, since=2, droppable=True),
        _Field("metadata", "metadata", _metadata, since=2, droppable=True),
    ]


def _option_fields(*, handler: bool) -> list[_Field]:
    v3 = [
        _Field("inactivityTimeout", "inactivity_timeout", _uint, 3),
        _Field("abortTimeout", "abort_timeout", _uint, 3),
        _Field("journalRetention", "journal_retention", _uint, 3),
        _Field("idempotencyRetention", "idempotency_retention", _uint, 3),
    ]
    if handler:
        v3.append(_Field("workflowCompletionRetention", "workflow_completion_retention", _uint, 3))
    v3 += [
        _Field("enableLazyState", "enable_lazy_state", _bool, 3),
        _Field("ingressPrivate", "ingress_private", _bool, 3),
    ]
    v4 = [
        _Field("retryPolicyInitialInterval", "retry_policy_initial_interval", _uint, 4),
        _Field("retryPolicyMaxInterval", "retry_policy_max_interval", _uint, 4),
        _Field("retryPolicyMaxAttempts", "retry_policy_max_attempts", _uint, 4),
        _Field("retryPolicyExponentiationFactor", "retry_policy_exponentiation_factor", _number, 4),
        _Field("retryPolicyOnMaxAttempts", "retry_policy_on_max_attempts", _enum(RetryOnMaxAttempts), 4),
    ]
    return v3 + v4


def _render(obj: Any, table: list[_Field], version: int, path: str, out: dict[str, Any]) -> None:
    for f in table:
        value = getattr(obj, f.attr)
        if value is None:
            continue
        if version < f.since:
            if f.droppable:
                continue
            raise ManifestError(
                f"{path}.{f.key} is only supported in discovery protocol version {f.since} "
                f"and later, not in version {version}"
            )
        if isinstance(value, Mapping):
            value = dict(value)
        out[f.key] = value.value if isinstance(value, enum.Enum) else value


def _parse(data: Mapping[str, Any], table: list[_Field], path: str, version: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for f in table:
        if f.key not in data or data[f.key] is None:
            continue
        fpath = f"{path}.{f.key}"
        if version is not None and version < f.since:
            raise ManifestError(f"{fpath} is not part of discovery protocol version {version}")
        kwargs[f.attr] = f.check(data[f.key], fpath)
    return kwargs


def _expect_object(value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestError(f"{path}: expected an object, got {_jtype(value)}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ManifestError(f"{path}: unknown field(s) {', '.join(unknown)}")
    return value


def _require(data: Mapping[str, Any], key: str, path: str) -> Any:
    if data.get(key) is None:
        raise ManifestError(f"{path}: missing required field {key!r}")
    return data[key]


def _check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_DISCOVERY_VERSION:
        supported = f"1-{int(MAX_DISCOVERY_VERSION)}"
        raise ManifestError(f"unsupported discovery version {version!r} (supported: {supported})")
    return version


# ---------------------------------------------------------------------------------------------------------
# model


@dataclass(frozen=True, slots=True)
class InputPayload:
    """Handler input. All None (JSON `{}`) means "no body expected"; a missing `input` means the server
    default `{contentType: "*/*", required: false}`."""

    content_type: str | None = None
    required: bool | None = None
    json_schema: JsonValue = field(default=None, hash=False)

    _TABLE: ClassVar[list[_Field]] = [
        _Field("required", "required", _bool),
        _Field("contentType", "content_type", _str),
        _Field("jsonSchema", "json_schema", _any_json),
    ]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _render(self, self._TABLE, MAX_DISCOVERY_VERSION, "input", out)
        return out

    @classmethod
    def from_json(cls, data: Any, path: str = "input") -> Self:
        obj = _expect_object(data, path, {f.key for f in cls._TABLE})
        return cls(**_parse(obj, cls._TABLE, path, None))


@dataclass(frozen=True, slots=True)
class OutputPayload:
    """Handler output; a missing `output` means `{contentType: "application/json",
    setContentTypeIfEmpty: false}` on the server."""

    content_type: str | None = None
    set_content_type_if_empty: bool | None = None
    json_schema: JsonValue = field(default=None, hash=False)

    _TABLE: ClassVar[list[_Field]] = [
        _Field("contentType", "content_type", _str),
        _Field("setContentTypeIfEmpty", "set_content_type_if_empty", _bool),
        _Field("jsonSchema", "json_schema", _any_json),
    ]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _render(self, self._TABLE, MAX_DISCOVERY_VERSION, "output", out)
        return out

    @classmethod
    def from_json(cls, data: Any, path: str = "output") -> Self:
        obj = _expect_object(data, path, {f.key for f in cls._TABLE})
        return cls(**_parse(obj, cls._TABLE, path, None))


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    ty: HandlerType | None = None
    input: InputPayload | None = None
    output: OutputPayload | None = None
    documentation: str | None = None
    metadata: Mapping[str, str] | None = field(default=None, hash=False)
    inactivity_timeout: int | None = None  # all durations in ms
    abort_timeout: int | None = None
    journal_retention: int | None = None
    idempotency_retention: int | None = None
    workflow_completion_retention: int | None = None
    enable_lazy_state: bool | None = None
    ingress_private: bool | None = None
    retry_policy_initial_interval: int | None = None
    retry_policy_max_interval: int | None = None
    retry_policy_max_attempts: int | None = None
    retry_policy_exponentiation_factor: float | None = None
    retry_policy_on_max_attempts: RetryOnMaxAttempts | None = None

    _KEYS: ClassVar[set[str]] = {"name", "ty", "input", "output"}

    def __post_init__(self) -> None:
        # Accept plain strings from hand-built manifests; the rest of the code compares enum members.
        if self.ty is not None:
            object.__setattr__(self, "ty", HandlerType(self.ty))
        if self.retry_policy_on_max_attempts is not None:
            object.__setattr__(
                self, "retry_policy_on_max_attempts", RetryOnMaxAttempts(self.retry_policy_on_max_attempts)
            )

    _TABLE: ClassVar[list[_Field]] = [*_doc_fields(), *_option_fields(handler=True)]

    def effective_type(self, service_type: ServiceType) -> HandlerType | None:
        """The handler type the server assumes when `ty` is unset (None for plain services)."""
        if self.ty is not None:
            return self.ty
        if service_type is ServiceType.VIRTUAL_OBJECT:
            return HandlerType.EXCLUSIVE
        if service_type is ServiceType.WORKFLOW:
            return HandlerType.WORKFLOW
        return None

    def to_json(self, version: int = MAX_DISCOVERY_VERSION, path: str = "handler") -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.ty is not None:
            out["ty"] = self.ty.value
        if self.input is not None:
            out["input"] = self.input.to_json()
        if self.output is not None:
            out["output"] = self.output.to_json()
        _render(self, self._TABLE, version, f"{path}[{self.name}]", out)
        return out

    @classmethod
    def from_json(cls, data: Any, path: str = "handler", version: int | None = None) -> Self:
        obj = _expect_object(data, path, cls._KEYS | {f.key for f in cls._TABLE})
        name = _str(_require(obj, "name", path), f"{path}.name")
        if not HANDLER_NAME_RE.fullmatch(name):
            raise ManifestError(f"{path}.name: invalid handler name {name!r}")
        kwargs = _parse(obj, cls._TABLE, path, version)
        if obj.get("ty") is not None:
            kwargs["ty"] = _enum(HandlerType)(obj["ty"], f"{path}.ty")
        if obj.get("input") is not None:
            kwargs["input"] = InputPayload.from_json(obj["input"], f"{path}.input")
        if obj.get("output") is not None:
            kwargs["output"] = OutputPayload.from_json(obj["output"], f"{path}.output")
        return cls(name=name, **kwargs)


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    ty: ServiceType
    handlers: tuple[Handler, ...] = ()
    documentation: str | None = None
    metadata: Mapping[str, str] | None = field(default=None, hash=False)
    inactivity_timeout: int | None = None
    abort_timeout: int | None = None
    journal_retention: int | None = None
    idempotency_retention: int | None = None
    enable_lazy_state: bool | None = None
    ingress_private: bool | None = None
    retry_policy_initial_interval: int | None = None
    retry_policy_max_interval: int | None = None
    retry_policy_max_attempts: int | None = None
    retry_policy_exponentiation_factor: float | None = None
    retry_policy_on_max_attempts: RetryOnMaxAttempts | None = None

    _KEYS: ClassVar[set[str]] = {"name", "ty", "handlers"}

    def __post_init__(self) -> None:
        object.__setattr__(self, "ty", ServiceType(self.ty))
        object.__setattr__(self, "handlers", tuple(self.handlers))
        if self.retry_policy_on_max_attempts is not None:
            object.__setattr__(
                self, "retry_policy_on_max_attempts", RetryOnMaxAttempts(self.retry_policy_on_max_attempts)
            )

    _TABLE: ClassVar[list[_Field]] = [*_doc_fields(), *_option_fields(handler=False)]

    def handler(self, name: str) -> Handler | None:
        return next((h for h in self.handlers if h.name == name), None)

    def to_json(self, version: int = MAX_DISCOVERY_VERSION) -> dict[str, Any]:
        path = f"services[{self.name}]"
        out: dict[str, Any] = {
            "name": self.name,
            "ty": self.ty.value,
            "handlers": [h.to_json(version, f"{path}.handlers") for h in self.handlers],
        }
        _render(self, self._TABLE, version, path, out)
        return out

    @classmethod
    def from_json(cls, data: Any, path: str = "service", version: int | None = None) -> Self:
        obj = _expect_object(data, path, cls._KEYS | {f.key for f in cls._TABLE})
        name = _str(_require(obj, "name", path), f"{path}.name")
        if not SERVICE_NAME_RE.fullmatch(name):
            raise ManifestError(f"{path}.name: invalid service name {name!r}")
        ty = _enum(ServiceType)(_require(obj, "ty", path), f"{path}.ty")
        raw_handlers = _require(obj, "handlers", path)
        if not isinstance(raw_handlers, list):
            raise ManifestError(f"{path}.handlers: expected an array, got {_jtype(raw_handlers)}")
        handlers = tuple(
            Handler.from_json(h, f"{path}.handlers[{i}]", version) for i, h in enumerate(raw_handlers)
        )
        service = cls(name=name, ty=ty, handlers=handlers, **_parse(obj, cls._TABLE, path, version))
        service._validate_handlers(path)
        return service

    def _validate_handlers(self, path: str) -> None:
        seen: set[str] = set()
        for i, h in enumerate(self.handlers):
            hpath = f"{path}.handlers[{i}]"
            if h.name in seen:
                raise ManifestError(f"{hpath}: duplicate handler name {h.name!r} in service {self.name!r}")
            seen.add(h.name)
            if self.ty is ServiceType.SERVICE and h.ty is not None:
                raise ManifestError(f"{hpath}.ty: handlers of a plain service must not set a type")
            if self.ty is ServiceType.VIRTUAL_OBJECT and h.ty is HandlerType.WORKFLOW:
                raise ManifestError(f"{hpath}.ty: a virtual object cannot have a WORKFLOW handler")
            if self.ty is ServiceType.WORKFLOW and h.ty is HandlerType.EXCLUSIVE:
                raise ManifestError(f"{hpath}.ty: a workflow cannot have an EXCLUSIVE handler")
            is_wf = h.effective_type(self.ty) is HandlerType.WORKFLOW
            if h.workflow_completion_retention is not None and not is_wf:
                raise ManifestError(f"{hpath}.workflowCompletionRetention: only valid on WORKFLOW handlers")
            if h.idempotency_retention is not None and is_wf:
                raise ManifestError(f"{hpath}.idempotencyRetention: not valid on WORKFLOW handlers")


@dataclass(frozen=True, slots=True)
class EndpointManifest:
    protocol_mode: ProtocolMode
    min_protocol_version: int
    max_protocol_version: int
    services: tuple[Service, ...] = ()
    lambda_compression: str | None = None  # "zstd"; Lambda endpoints only

    _KEYS: ClassVar[set[str]] = {
        "protocolMode",
        "minProtocolVersion",
        "maxProtocolVersion",
        "services",
        "lambdaCompression",
    }

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol_mode", ProtocolMode(self.protocol_mode))
        object.__setattr__(self, "services", tuple(self.services))

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def to_json(self, version: int = MAX_DISCOVERY_VERSION) -> dict[str, Any]:
        """The manifest as the JSON object of discovery `version` (raises ManifestError if impossible)."""
        _check_version(version)
        out: dict[str, Any] = {
            "protocolMode": self.protocol_mode.value,
            "minProtocolVersion": self.min_protocol_version,
            "maxProtocolVersion": self.max_protocol_version,
        }
        if self.lambda_compression is not None and version >= 4:
            out["lambdaCompression"] = self.lambda_compression
        out["services"] = [s.to_json(version) for s in self.services]
        return out

    def dumps(self, version: int = MAX_DISCOVERY_VERSION) -> str:
        return json.dumps(self.to_json(version), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, data: Any, version: int | None = None) -> Self:
        """Validate and load a manifest. With `version`, fields newer than that version are errors too."""
        if version is not None:
            _check_version(version)
        path = "manifest"
        obj = _expect_object(data, path, cls._KEYS)
        mode = _enum(ProtocolMode)(_require(obj, "protocolMode", path), f"{path}.protocolMode")
        lo = _protocol_version(_require(obj, "minProtocolVersion", path), f"{path}.minProtocolVersion")
        hi = _protocol_version(_require(obj, "maxProtocolVersion", path), f"{path}.maxProtocolVersion")
        if lo > hi:
            raise ManifestError(f"{path}: minProtocolVersion {lo} is greater than maxProtocolVersion {hi}")
        compression = None
        if obj.get("lambdaCompression") is not None:
            if version is not None and version < 4:
                raise ManifestError(
                    f"{path}.lambdaCompression is not part of discovery protocol version {version}"
                )
            compression = _str(obj["lambdaCompression"], f"{path}.lambdaCompression")
            if compression != "zstd":
                raise ManifestError(f"{path}.lambdaCompression: {compression!r} is not one of zstd")
        raw_services = _require(obj, "services", path)
        if not isinstance(raw_services, list):
            raise ManifestError(f"{path}.services: expected an array, got {_jtype(raw_services)}")
        services = tuple(
            Service.from_json(s, f"{path}.services[{i}]", version) for i, s in enumerate(raw_services)
        )
        names = [s.name for s in services]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ManifestError(f"{path}.services: duplicate service name(s) {', '.join(dupes)}")
        return cls(mode, lo, hi, services, compression)

    @classmethod
    def loads(cls, text: str | bytes, version: int | None = None) -> Self:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise ManifestError(f"manifest is not valid JSON: {e}") from None
        return cls.from_json(data, version)


def _protocol_version(value: Any, path: str) -> int:
    n = _uint(value, path)
    if not 1 <= n <= _MAX_PROTOCOL_VERSION_VALUE:
        raise ManifestError(f"{path}: must be in [1, {_MAX_PROTOCOL_VERSION_VALUE}], got {n}")
    return n


__all__ = [
    "HANDLER_NAME_RE",
    "SERVICE_NAME_RE",
    "EndpointManifest",
    "Handler",
    "HandlerType",
    "InputPayload",
    "ManifestError",
    "OutputPayload",
    "ProtocolMode",
    "RetryOnMaxAttempts",
    "Service",
    "ServiceType",
]
