"""Identifiers against ids the official server produced (captures) and the upstream documentation example."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocol_captures import CAPTURES

from pyrestate.protocol import ids
from pyrestate.protocol.ids import (
    UNSCOPED_SERVICE_BUCKETS,
    DeploymentId,
    InvocationId,
    SubscriptionId,
    awakeable_id,
    base62_decode,
    base62_encode,
    idempotent_service_partition_key,
    parse_awakeable_id,
    partition_key_for_key,
    unscoped_service_partition_key,
)

U64 = st.integers(0, (1 << 64) - 1)
U128 = st.integers(0, (1 << 128) - 1)


def _year(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def test_upstream_example_decodes_with_the_byte_swap() -> None:
    inv = InvocationId.parse("inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz")
    assert inv.partition_key == 0x493C42ED1C3CF1BC
    when = _year(inv.timestamp_ms)
    assert (when.year, when.month) == (2024, 3)
    assert str(inv) == "inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz"


def test_text_and_binary_forms() -> None:
    inv = InvocationId(0x0102030405060708, 0x1112131415161718191A1B1C1D1E1F20)
    raw = inv.to_bytes()
    assert raw == bytes.fromhex("0102030405060708") + bytes.fromhex("1112131415161718191a1b1c1d1e1f20")
    assert InvocationId.from_bytes(raw) == inv
    text = str(inv)
    assert len(text) == 38 and text.startswith("inv_1")
    assert InvocationId.parse(text) == inv
    # The partition key owns the 11 characters after the prefix.
    assert text[5:16] == base62_encode(inv.partition_key, 8)
    assert str(InvocationId(0, 0)) == "inv_1" + "0" * 33


@given(U64, U128)
def test_round_trip(pk: int, uuid: int) -> None:
    inv = InvocationId(pk, uuid)
    assert InvocationId.parse(str(inv)) == inv
    assert InvocationId.from_bytes(inv.to_bytes()) == inv
    assert len(str(inv)) == 38
    assert re.fullmatch(r"inv_1[0-9a-zA-Z]{33}", str(inv))


@given(U128)
def test_base62_fixed_width(value: int) -> None:
    text = base62_encode(value, 16)
    assert len(text) == 22
    assert base62_decode(text, 16) == value


def test_base62_swaps_bytes() -> None:
    # 1 as a u64 is encoded as 0x0100000000000000 read little-endian = 2**56.
    assert base62_decode(base62_encode(1, 8), 8) == 1
    n = 1 << 56
    digits = ""
    while n:
        n, r = divmod(n, 62)
        digits = ids.BASE62_ALPHABET[r] + digits
    assert base62_encode(1, 8) == digits.rjust(11, "0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "prefix"),
        ("inv1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz", "prefix"),
        ("dp_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz", "prefix"),
        ("inv_2gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz", "prefix"),
        ("inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hb", "38 characters"),
        ("inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbzz", "38 characters"),
        ("inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hb-", "invalid base62 character"),
        ("inv_1ZZZZZZZZZZZ42bjcDmb1c1khoaJe11Hbz", "overflows"),
    ],
)
def test_parse_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InvocationId.parse(text)


def test_constructor_range_checks() -> None:
    with pytest.raises(ValueError):
        InvocationId(-1, 0)
    with pytest.raises(ValueError):
        InvocationId(0, 1 << 128)
    with pytest.raises(ValueError, match="24 bytes"):
        InvocationId.from_bytes(b"\x00" * 23)


def test_generate_uses_a_ulid() -> None:
    inv = InvocationId.generate(42, timestamp_ms=1_700_000_000_123, randomness=5)
    assert inv.partition_key == 42
    assert inv.uuid == (1_700_000_000_123 << 80) | 5
    assert inv.timestamp_ms == 1_700_000_000_123
    a, b = InvocationId.generate(1), InvocationId.generate(1)
    assert a != b
    assert abs(a.timestamp_ms - datetime.now(UTC).timestamp() * 1000) < 60_000


# ---- ids the official server computed (captures/ingress-curl.txt)


def test_workflow_run_id_matches_restate() -> None:
    # POST /Wf/w1/run/send answered x-restate-id: inv_12kpUQONmeFb2WqsVOkAjH4phS34cOyIC8
    assert str(InvocationId.for_workflow_run("Wf", "w1")) == "inv_12kpUQONmeFb2WqsVOkAjH4phS34cOyIC8"
    same = InvocationId.for_target("Wf", "run", key="w1", idempotency_key="ignored", workflow_run=True)
    assert str(same) == "inv_12kpUQONmeFb2WqsVOkAjH4phS34cOyIC8"


@pytest.mark.parametrize(
    ("service", "handler", "idem", "expected"),
    [
        ("taskWorker", "runTask", "key-A", "inv_11aR6HRa5Wj82zO2X0JJuTVEVjNekpNcK7"),
        ("taskWorker", "runTask", "key-delayed", "inv_11ASysxAVHM15fFv9hX1j8n7mGo9Jk6wQO"),
        ("taskWorker", "runTask", "sync-1", "inv_1duKk3KvPMDL6d8JC4VIyleimnPaARwPaF"),
    ],
)
def test_idempotent_request_id_matches_restate(service: str, handler: str, idem: str, expected: str) -> None:
    assert str(InvocationId.for_idempotent_request(service, handler, idem)) == expected
    assert str(InvocationId.for_target(service, handler, idempotency_key=idem)) == expected


def test_idempotent_ids_depend_on_every_part() -> None:
    base = InvocationId.for_idempotent_request("S", "h", "k")
    assert base == InvocationId.for_idempotent_request("S", "h", "k")
    assert base != InvocationId.for_idempotent_request("S", "h2", "k")
    assert base != InvocationId.for_idempotent_request("S2", "h", "k")
    assert base.uuid != InvocationId.for_idempotent_request("S", "h", "k", key="o").uuid
    assert ids.idempotent_request_uuid("S", "h", "k") != ids.idempotent_request_uuid("S", "h", "k", scope="x")
    assert ids.workflow_run_uuid("W", "k") != ids.workflow_run_uuid("W", "k", scope="x")


def test_keyed_partition_keys_match_restate() -> None:
    # Counter/c1 and Awk/a1 invocations: the partition key is the hash of the object key.
    assert InvocationId.parse(
        "inv_1cttqfy89hGI5s7XTQmAm3Fy6Uib5cpyqT"
    ).partition_key == partition_key_for_key("c1")
    assert InvocationId.parse(
        "inv_18chTyKUhmg16JYmejO0dq3nxBD71HbrUa"
    ).partition_key == partition_key_for_key("a1")
    keyed = InvocationId.for_target("Counter", "add", key="c1")
    assert keyed.partition_key == partition_key_for_key("c1")


def test_plain_service_partition_keys_come_from_the_service_bucket_set() -> None:
    buckets = {unscoped_service_partition_key("taskWorker", b) for b in range(ids.UNSCOPED_SERVICE_BUCKETS)}
    for text in ("inv_1gaIzkHkIJGM5BB20OJ5elvNItcghaaKyg", "inv_1lSfQ5TqcVGa1SG9OKJuTyGHSewvfxMQLd"):
        assert InvocationId.parse(text).partition_key in buckets
    assert InvocationId.for_target("taskWorker", "runTask").partition_key in buckets
    assert idempotent_service_partition_key("taskWorker", "key-A") in buckets
    with pytest.raises(ValueError):
        unscoped_service_partition_key("taskWorker", 512)


def test_ids_in_captures_all_parse() -> None:
    text = (CAPTURES / "ingress-curl.txt").read_text(errors="replace") + (
        CAPTURES / "admin-curl.txt"
    ).read_text(errors="replace")
    found = set(re.findall(r"inv_1[0-9a-zA-Z]{33}(?![0-9a-zA-Z])", text))
    # The admin capture holds one deliberately bogus id, which the server refused ("base62 decode error").
    bogus = "inv_1" + "a" * 33
    assert bogus in found
    found.discard(bogus)
    with pytest.raises(ValueError, match="overflows"):
        InvocationId.parse(bogus)
    assert len(found) > 20
    for s in found:
        inv = InvocationId.parse(s)
        assert str(inv) == s


# ---- awakeable ids


def test_awakeable_id_from_capture() -> None:
    # Awk/a1/id returned the awakeable of the Awk/a1/wait invocation, signal 17.
    text = "sign_1cawKW1BTfV9-92Ny2L6cXTWDrzWnOIHdAAAAEQ"
    inv, idx = parse_awakeable_id(text)
    assert str(inv) == "inv_18chTyKUhmg16JYmejO0dq3nxBD71HbrUa"
    assert idx == 17
    assert awakeable_id(inv, 17) == text
    assert len(text) == 44


def test_awakeable_id_padded_and_legacy_forms() -> None:
    inv = InvocationId(7, 99)
    text = awakeable_id(inv, 20)
    assert "=" not in text
    body = text.removeprefix("sign_1")
    assert parse_awakeable_id("sign_1" + body + "=" * (-len(body) % 4)) == (inv, 20)
    raw = inv.to_bytes() + (3).to_bytes(4, "big")
    legacy = "prom_1" + base64.urlsafe_b64encode(raw).decode()
    assert parse_awakeable_id(legacy) == (inv, 3)


@given(U64, U128, st.integers(0, 0xFFFF_FFFF))
def test_awakeable_round_trip(pk: int, uuid: int, idx: int) -> None:
    inv = InvocationId(pk, uuid)
    text = awakeable_id(inv, idx)
    assert len(text) == 44
    assert parse_awakeable_id(text) == (inv, idx)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sign_1NotARealAwakeableId", "bytes|base64"),
        ("garbage", "prefix"),
        ("sign_1" + "A" * 37, "base64"),
        ("sign_1cawKW1BTfV9+92Ny2L6cXTWDrzWnOIHdAAAAEQ", "base64"),
        ("sign_1cawKW1BTfV9-92Ny2L6cXTWDrzWnOIHdAAAA", "bytes"),
    ],
)
def test_awakeable_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_awakeable_id(text)


# ---- resource ids


def test_deployment_id_from_capture() -> None:
    text = "dp_116zPhmWzWGcGcAu2eXpLYl"
    dp = DeploymentId.parse(text)
    assert str(dp) == text
    assert _year(dp.timestamp_ms).year == 2026  # the capture was taken in November 2026
    with pytest.raises(ValueError, match="DeploymentId"):
        DeploymentId.parse("sub_116zPhmWzWGcGcAu2eXpLYl")


def test_deployment_ids_in_admin_captures() -> None:
    found = set(re.findall(r"dp_1[0-9a-zA-Z]{22}", (CAPTURES / "admin-curl.txt").read_text(errors="replace")))
    assert found
    for s in found:
        assert str(DeploymentId.parse(s)) == s


def test_generated_resource_ids() -> None:
    dp = DeploymentId.generate()
    assert str(dp).startswith("dp_1") and len(str(dp)) == 26
    assert DeploymentId.parse(str(dp)) == dp
    sub = SubscriptionId.generate(timestamp_ms=1, randomness=2)
    assert str(sub).startswith("sub_1") and len(str(sub)) == 27
    assert SubscriptionId.parse(str(sub)) == sub
    assert sub.timestamp_ms == 1


def test_v5_seed_is_stable() -> None:
    inv = InvocationId.parse("inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz")
    assert inv.v5_random_seed() == InvocationId.from_bytes(inv.to_bytes()).v5_random_seed()
    assert 0 <= inv.v5_random_seed() < 1 << 64


def test_captures_dir_exists() -> None:
    assert isinstance(CAPTURES, Path) and CAPTURES.is_dir()


# ---------------------------------------------------------------------------------------------------------
# ids of calls made by handlers


def test_a_call_id_is_a_function_of_the_caller_and_the_command_index() -> None:
    caller = InvocationId.for_idempotent_request("Greeter", "greet", "a")
    other = InvocationId.for_idempotent_request("Greeter", "greet", "b")

    def call(c: InvocationId, index: int, at: int = 1_700_000_000_000) -> InvocationId:
        return InvocationId.for_call(c, index, "Greeter", "greet", timestamp_ms=at)

    assert call(caller, 3) == call(caller, 3)
    assert len({call(caller, 3), call(caller, 4), call(other, 3), call(caller, 3, at=1)}) == 4
    assert call(caller, 3).timestamp_ms == 1_700_000_000_000  # still a ULID: time-ordered
    buckets = {unscoped_service_partition_key("Greeter", b) for b in range(UNSCOPED_SERVICE_BUCKETS)}
    assert {call(caller, i).partition_key for i in range(50)} <= buckets
    assert len({call(caller, i).partition_key for i in range(50)}) > 10  # spread like a random draw


def test_a_keyed_idempotent_or_workflow_call_keeps_its_id_rules() -> None:
    caller = InvocationId.for_workflow_run("Wf", "w")
    keyed = InvocationId.for_call(caller, 1, "Counter", "add", timestamp_ms=5, key="k")
    assert keyed.partition_key == partition_key_for_key("k")
    idem = InvocationId.for_call(caller, 1, "Counter", "add", timestamp_ms=5, key="k", idempotency_key="i")
    assert idem == InvocationId.for_idempotent_request("Counter", "add", "i", "k")
    run = InvocationId.for_call(caller, 1, "Wf", "run", timestamp_ms=5, key="z", workflow_run=True)
    assert run == InvocationId.for_workflow_run("Wf", "z")
