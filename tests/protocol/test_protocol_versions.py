"""Content types and version negotiation, checked against the headers seen on the wire."""

from __future__ import annotations

import json

import pytest
from protocol_captures import CAPTURES

from pyrestate.protocol.versions import (
    SERVER_DISCOVERY_ACCEPT,
    DiscoveryVersion,
    ServiceProtocolVersion,
    UnsupportedVersionError,
    choose_discovery_version,
    discovery_content_type,
    invocation_content_type,
    is_supported_range,
    negotiate,
    parse_discovery_accept,
    parse_discovery_content_type,
    parse_invocation_content_type,
)


def _ct(n: int) -> str:
    return f"application/vnd.restate.endpointmanifest.v{n}+json"


def _captured_headers() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for f in CAPTURES.glob("sdk-protocol-*-raw.jsonl"):
        for line in f.read_text().splitlines():
            ev = json.loads(line)
            out += [(k.lower(), v) for k, v in ev.get("headers", [])]
    return out


def test_server_discovery_accept_is_exactly_what_restate_sends() -> None:
    accepts = {v for k, v in _captured_headers() if k == "accept" and "endpointmanifest" in v}
    assert accepts == {SERVER_DISCOVERY_ACCEPT}
    assert choose_discovery_version(SERVER_DISCOVERY_ACCEPT) is DiscoveryVersion.V4


def test_captured_invocation_content_types_parse() -> None:
    cts = {v for k, v in _captured_headers() if k == "content-type" and "invocation" in v}
    assert cts == {"application/vnd.restate.invocation.v6"}
    assert parse_invocation_content_type(cts.pop()) is ServiceProtocolVersion.V6


def test_invocation_content_type_format_and_parse() -> None:
    for v in ServiceProtocolVersion:
        ct = invocation_content_type(v)
        assert ct == f"application/vnd.restate.invocation.v{int(v)}"
        assert parse_invocation_content_type(ct) is v
    assert (
        parse_invocation_content_type(" Application/Vnd.Restate.Invocation.V7 ; x=y")
        is ServiceProtocolVersion.V7
    )


@pytest.mark.parametrize("value", ["application/json", "", "application/vnd.restate.invocation.v", "v5"])
def test_invocation_content_type_rejects_other_types(value: str) -> None:
    with pytest.raises(ValueError, match="not a Restate invocation content type"):
        parse_invocation_content_type(value)


@pytest.mark.parametrize("n", [1, 3, 4, 8, 99])
def test_invocation_content_type_rejects_unsupported_versions(n: int) -> None:
    with pytest.raises(UnsupportedVersionError, match=f"version {n}") as info:
        parse_invocation_content_type(f"application/vnd.restate.invocation.v{n}")
    assert info.value.version == n


@pytest.mark.parametrize(
    ("lo", "hi", "server_max", "expected"),
    [
        (5, 7, 6, 6),  # official SDK vs a 1.7 server without the V7 flag
        (5, 7, 7, 7),
        (5, 6, 7, 6),
        (5, 5, 7, 5),
        (6, 7, 6, 6),
        (7, 7, 6, None),  # deployment needs V7, server stops at V6
        (1, 4, 7, None),  # legacy-only deployment
        (1, 9, 7, 7),
        (3, 5, 6, 5),
        (6, 5, 7, None),  # inverted range
        (5, 7, 4, None),
    ],
)
def test_negotiate(lo: int, hi: int, server_max: int, expected: int | None) -> None:
    got = negotiate(lo, hi, server_max)
    assert got == expected
    if got is not None:
        assert isinstance(got, ServiceProtocolVersion)


def test_supported_range_for_registration() -> None:
    assert is_supported_range(5, 7)
    assert is_supported_range(1, 5)
    assert is_supported_range(7, 100)
    assert not is_supported_range(1, 4)
    assert not is_supported_range(8, 9)
    assert not is_supported_range(7, 5)


def test_discovery_content_types() -> None:
    for v in DiscoveryVersion:
        ct = discovery_content_type(v)
        assert ct == f"application/vnd.restate.endpointmanifest.v{int(v)}+json"
        assert parse_discovery_content_type(ct) is v
    with pytest.raises(UnsupportedVersionError):
        parse_discovery_content_type("application/vnd.restate.endpointmanifest.v5+json")
    with pytest.raises(ValueError):
        parse_discovery_content_type("application/json")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (SERVER_DISCOVERY_ACCEPT, 4),
        ("application/vnd.restate.endpointmanifest.v2+json", 2),
        (
            f"{_ct(1)}, {_ct(3)}",
            3,
        ),
        (
            f"{_ct(9)}, {_ct(2)}",
            2,
        ),
        (
            f"{_ct(4)};q=0, {_ct(3)}",
            3,
        ),
        ("APPLICATION/VND.RESTATE.ENDPOINTMANIFEST.V4+JSON", 4),
        ("application/vnd.restate.endpointmanifest.v5+json", None),
        ("application/json", None),
        (None, 2),  # no Accept: the official SDK answers v2
        ("", 2),
    ],
)
def test_choose_discovery_version(accept: str | None, expected: int | None) -> None:
    assert choose_discovery_version(accept) == expected


def test_choose_discovery_version_with_a_lower_ceiling() -> None:
    assert choose_discovery_version(SERVER_DISCOVERY_ACCEPT, max_version=2) is DiscoveryVersion.V2


def test_parse_discovery_accept_lists_every_version() -> None:
    assert parse_discovery_accept(SERVER_DISCOVERY_ACCEPT) == {1, 2, 3, 4}
