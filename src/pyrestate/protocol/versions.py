"""Service protocol and discovery protocol versions, their content types, and negotiation. Pure code."""

from __future__ import annotations

import enum
import re


class ServiceProtocolVersion(enum.IntEnum):
    """Invocation protocol versions pyrestate speaks (V1-V4 are legacy/yanked and never negotiated)."""

    V5 = 5
    V6 = 6
    V7 = 7


MIN_SERVICE_PROTOCOL_VERSION = ServiceProtocolVersion.V5
MAX_SERVICE_PROTOCOL_VERSION = ServiceProtocolVersion.V7
#: What a Restate 1.7 server negotiates by default (V7 is behind an experimental flag there).
DEFAULT_SERVER_MAX_VERSION = ServiceProtocolVersion.V6
#: What pyrestate's SDK state machine speaks (V7: future-tree suspension, scoped calls, Start's V7 fields).
SDK_MAX_VERSION = ServiceProtocolVersion.V7


class DiscoveryVersion(enum.IntEnum):
    """Endpoint manifest (discovery) versions."""

    V1 = 1
    V2 = 2
    V3 = 3
    V4 = 4


MAX_DISCOVERY_VERSION = DiscoveryVersion.V4


class UnsupportedVersionError(ValueError):
    """A content type names a protocol version outside the supported range (HTTP 415 territory)."""

    def __init__(self, message: str, version: int | None = None) -> None:
        super().__init__(message)
        self.version = version


_INVOCATION_CT = re.compile(r"application/vnd\.restate\.invocation\.v(\d+)")
_DISCOVERY_CT = re.compile(r"application/vnd\.restate\.endpointmanifest\.v(\d+)\+json")


def _media_type(value: str) -> str:
    """The media type of a header value, without parameters, lower-cased."""
    return value.split(";", 1)[0].strip().lower()


# ---- invocation content types


def invocation_content_type(version: int) -> str:
    return f"application/vnd.restate.invocation.v{int(version)}"


def parse_invocation_content_type(value: str) -> ServiceProtocolVersion:
    """Version of an `application/vnd.restate.invocation.vN` content type.

    Raises ValueError for anything else, UnsupportedVersionError (a ValueError) for a well-formed type
    whose N is not V5-V7.
    """
    m = _INVOCATION_CT.fullmatch(_media_type(value))
    if m is None:
        raise ValueError(f"not a Restate invocation content type: {value!r}")
    n = int(m.group(1))
    try:
        return ServiceProtocolVersion(n)
    except ValueError:
        raise UnsupportedVersionError(
            f"unsupported service protocol version {n} (supported: "
            f"{MIN_SERVICE_PROTOCOL_VERSION.value}-{MAX_SERVICE_PROTOCOL_VERSION.value})",
            n,
        ) from None


def negotiate(deployment_min: int, deployment_max: int, server_max: int) -> ServiceProtocolVersion | None:
    """The version a server uses for a new invocation: min(deployment max, server max), provided the
    deployment's range reaches down to it and pyrestate supports it. None if there is no such version."""
    if deployment_min > deployment_max:
        return None
    chosen = min(deployment_max, server_max, MAX_SERVICE_PROTOCOL_VERSION)
    if chosen < deployment_min or chosen < MIN_SERVICE_PROTOCOL_VERSION:
        return None
    return ServiceProtocolVersion(chosen)


def is_supported_range(deployment_min: int, deployment_max: int) -> bool:
    """Registration check: the advertised range must intersect V5..V7."""
    return (
        deployment_min <= deployment_max
        and deployment_min <= MAX_SERVICE_PROTOCOL_VERSION
        and deployment_max >= MIN_SERVICE_PROTOCOL_VERSION
    )


# ---- discovery content types


def discovery_content_type(version: int) -> str:
    return f"application/vnd.restate.endpointmanifest.v{int(version)}+json"


#: The `accept` header a Restate 1.7.12 server sends on `GET /discover`, byte for byte.
SERVER_DISCOVERY_ACCEPT = ", ".join(discovery_content_type(v) for v in DiscoveryVersion)


def parse_discovery_content_type(value: str) -> DiscoveryVersion:
    """Version of an `application/vnd.restate.endpointmanifest.vN+json` content type, else ValueError."""
    m = _DISCOVERY_CT.fullmatch(_media_type(value))
    if m is None:
        raise ValueError(f"not a Restate endpoint manifest content type: {value!r}")
    n = int(m.group(1))
    try:
        return DiscoveryVersion(n)
    except ValueError:
        raise UnsupportedVersionError(f"unsupported discovery version {n}", n) from None


def parse_discovery_accept(accept: str) -> set[int]:
    """All discovery versions listed in an Accept header (any N, q=0 entries excluded)."""
    versions: set[int] = set()
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        m = _DISCOVERY_CT.fullmatch(media.lower())
        if m is None:
            continue
        if any(_is_q_zero(p) for p in params):
            continue
        versions.add(int(m.group(1)))
    return versions


def _is_q_zero(param: str) -> bool:
    name, _, val = param.partition("=")
    if name.strip().lower() != "q":
        return False
    try:
        return float(val.strip()) == 0.0
    except ValueError:
        return False


def choose_discovery_version(
    accept: str | None, max_version: int = MAX_DISCOVERY_VERSION
) -> DiscoveryVersion | None:
    """The highest discovery version both the caller's Accept header and we support.

    A missing Accept header gets V2 (what the official Python SDK answers then); an Accept header naming
    no supported version gets None (the endpoint answers 415).
    """
    if accept is None or not accept.strip():
        return DiscoveryVersion.V2
    common = [v for v in parse_discovery_accept(accept) if 1 <= v <= min(max_version, MAX_DISCOVERY_VERSION)]
    return DiscoveryVersion(max(common)) if common else None
