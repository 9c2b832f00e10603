"""Restate's identifiers in their exact binary and text forms. Pure code: no IO.

Text form: ``<prefix>_1<payload>``. Integers are written as fixed-width base62 (alphabet ``0-9a-zA-Z``,
left-padded with ``0``) of the *byte-swapped* value: Restate encodes ``n.to_be()`` on a little-endian host,
so the number that gets base62-encoded is the big-endian bytes read back as little-endian.

Partition keys match Restate 1.7 bit for bit: XXH3-64 (seed 0) over Rust's ``Hash`` encoding of the key
(a ``str`` is its UTF-8 bytes plus a ``0xFF`` byte, a ``u64`` is 8 little-endian bytes, tuples are their
fields in order). Together with the deterministic uuid rules this makes workflow-run and idempotent-request
invocation ids identical to the ones the official server computes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import ClassVar, Self

import xxhash

BASE62_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BASE62_INDEX = {c: i for i, c in enumerate(BASE62_ALPHABET)}

#: Characters needed for a fixed-width u64 / u128.
U64_BASE62_LEN = 11
U128_BASE62_LEN = 22

ID_SCHEME_VERSION = "1"
INVOCATION_ID_PREFIX = "inv_1"
DEPLOYMENT_ID_PREFIX = "dp_1"
SUBSCRIPTION_ID_PREFIX = "sub_1"
AWAKEABLE_ID_PREFIX = "sign_1"
LEGACY_AWAKEABLE_ID_PREFIX = "prom_1"

INVOCATION_ID_BYTES = 24
INVOCATION_ID_STR_LEN = len(INVOCATION_ID_PREFIX) + U64_BASE62_LEN + U128_BASE62_LEN  # 38

#: Controlled sharding spreads plain (unkeyed) services over this many partition keys per service.
UNSCOPED_SERVICE_BUCKETS = 512

_U64_MAX = (1 << 64) - 1
_U128_MAX = (1 << 128) - 1
_HASH_SEPARATOR = b","
_BASE64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


# ---------------------------------------------------------------------------------------------------------
# base62


def base62_encode(value: int, nbytes: int) -> str:
    """Fixed-width base62 of an unsigned integer of `nbytes` bytes, with Restate's byte swap."""
    if not 0 <= value < (1 << (8 * nbytes)):
        raise ValueError(f"value {value} does not fit in {nbytes} bytes")
    n = int.from_bytes(value.to_bytes(nbytes, "big"), "little")
    width = _base62_width(nbytes)
    chars = ["0"] * width
    i = width
    while n:
        n, rem = divmod(n, 62)
        i -= 1
        chars[i] = BASE62_ALPHABET[rem]
    return "".join(chars)


def base62_decode(text: str, nbytes: int) -> int:
    """Inverse of :func:`base62_encode`; `text` must be exactly the fixed width."""
    width = _base62_width(nbytes)
    if len(text) != width:
        raise ValueError(f"expected {width} base62 characters, got {len(text)}")
    n = 0
    for c in text:
        digit = _BASE62_INDEX.get(c)
        if digit is None:
            raise ValueError(f"invalid base62 character {c!r}")
        n = n * 62 + digit
    if n >> (8 * nbytes):
        raise ValueError(f"base62 value {text!r} overflows {nbytes} bytes")
    return int.from_bytes(n.to_bytes(nbytes, "little"), "big")


def _base62_width(nbytes: int) -> int:
    if nbytes == 8:
        return U64_BASE62_LEN
    if nbytes == 16:
        return U128_BASE62_LEN
    raise ValueError(f"unsupported integer width: {nbytes} bytes")


# ---------------------------------------------------------------------------------------------------------
# ULID and deterministic uuids


def new_ulid(timestamp_ms: int | None = None, randomness: int | None = None) -> int:
    """A ULID as u128: 48-bit Unix time in ms, then 80 random bits. Both parts may be given for tests."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    rnd = secrets.randbits(80) if randomness is None else randomness
    if not 0 <= ts < (1 << 48):
        raise ValueError(f"ULID timestamp out of range: {ts}")
    if not 0 <= rnd < (1 << 80):
        raise ValueError("ULID randomness must fit in 80 bits")
    return (ts << 80) | rnd


def ulid_timestamp_ms(ulid: int) -> int:
    return ulid >> 80


def _sha256_u128(tag: bytes, parts: list[str]) -> int:
    h = hashlib.sha256(tag)
    for part in parts:
        h.update(_HASH_SEPARATOR)
        h.update(part.encode())
    return int.from_bytes(h.digest()[:16], "big")


def workflow_run_uuid(workflow_name: str, key: str, scope: str | None = None) -> int:
    """Uuid of the run of workflow `workflow_name` with key `key` (the same for every attempt to start it)."""
    parts = [] if scope is None else [scope]
    return _sha256_u128(b"wf", [*parts, workflow_name, key])


def idempotent_request_uuid(
    service_name: str,
    handler_name: str,
    idempotency_key: str,
    key: str | None = None,
    scope: str | None = None,
) -> int:
    """Uuid of a request carrying an idempotency key (`key` is the object/workflow key, if any)."""
    parts = [] if scope is None else [scope]
    parts.append(service_name)
    if key is not None:
        parts.append(key)
    parts += [handler_name, idempotency_key]
    return _sha256_u128(b"ik", parts)


# ---------------------------------------------------------------------------------------------------------
# partition keys


def _rust_hash(*parts: str | int) -> int:
    """XXH3-64 of the values fed as Rust's `Hash` does (str: bytes + 0xFF; int: u64 little-endian)."""
    h = xxhash.xxh3_64()
    for part in parts:
        if isinstance(part, str):
            h.update(part.encode())
            h.update(b"\xff")
        else:
            h.update(part.to_bytes(8, "little"))
    return h.intdigest()


def partition_key_for_key(key: str) -> int:
    """Partition key of a virtual object / workflow key (and of a plain idempotency key without sharding)."""
    return _rust_hash(key)


def unscoped_service_partition_key(service_name: str, bucket: int) -> int:
    """One of the `UNSCOPED_SERVICE_BUCKETS` partition keys a plain service spreads its invocations over."""
    if not 0 <= bucket < UNSCOPED_SERVICE_BUCKETS:
        raise ValueError(f"bucket must be in [0, {UNSCOPED_SERVICE_BUCKETS}), got {bucket}")
    return _rust_hash(service_name, "unscoped/service", bucket)


def idempotent_service_partition_key(service_name: str, idempotency_key: str) -> int:
    """Partition key of an idempotent request to a plain service (Restate 1.7's controlled sharding)."""
    bucket = partition_key_for_key(idempotency_key) % UNSCOPED_SERVICE_BUCKETS
    return unscoped_service_partition_key(service_name, bucket)


def random_service_partition_key(service_name: str, bucket: int | None = None) -> int:
    """Partition key of a plain, non-idempotent invocation: a random bucket of the service's key set."""
    b = secrets.randbelow(UNSCOPED_SERVICE_BUCKETS) if bucket is None else bucket
    return unscoped_service_partition_key(service_name, b)


# ---------------------------------------------------------------------------------------------------------
# invocation id


def _strip_prefix(text: str, prefix: str, what: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string, got {type(text).__name__}")
    if not text.startswith(prefix):
        raise ValueError(f"invalid {what} {text!r}: expected prefix {prefix!r}")
    return text[len(prefix) :]


_PARSED_IDS: dict[str, InvocationId] = {}
_PARSED_IDS_MAX = 4096


@dataclass(frozen=True, slots=True, order=True)
class InvocationId:
    """(partition key u64, invocation uuid u128). Raw form: 24 bytes, both big-endian (`StartMessage.id`)."""

    partition_key: int
    uuid: int

    def __post_init__(self) -> None:
        if not 0 <= self.partition_key <= _U64_MAX:
            raise ValueError(f"partition key out of u64 range: {self.partition_key}")
        if not 0 <= self.uuid <= _U128_MAX:
            raise ValueError(f"invocation uuid out of u128 range: {self.uuid}")

    # -- encodings

    def to_bytes(self) -> bytes:
        return self.partition_key.to_bytes(8, "big") + self.uuid.to_bytes(16, "big")

    @classmethod
    def from_bytes(cls, raw: bytes) -> InvocationId:
        if len(raw) != INVOCATION_ID_BYTES:
            raise ValueError(f"invocation id must be {INVOCATION_ID_BYTES} bytes, got {len(raw)}")
        return cls(int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big"))

    def __str__(self) -> str:
        return INVOCATION_ID_PREFIX + base62_encode(self.partition_key, 8) + base62_encode(self.uuid, 16)

    @classmethod
    def parse(cls, text: str) -> InvocationId:
        """Parse `inv_1…`; raises ValueError naming what is wrong."""
        # A server parses the same few ids over and over while they run (partition, seed, start message):
        # the base62 decoding is pure Python, so recent ones are remembered (ids are immutable values).
        cached = _PARSED_IDS.get(text) if type(text) is str else None
        if cached is not None and type(cached) is cls:
            return cached
        parsed = cls._parse(text)
        if len(_PARSED_IDS) >= _PARSED_IDS_MAX:
            _PARSED_IDS.clear()
        _PARSED_IDS[text] = parsed
        return parsed

    @classmethod
    def _parse(cls, text: str) -> InvocationId:
        body = _strip_prefix(text, INVOCATION_ID_PREFIX, "invocation id")
        if len(body) != U64_BASE62_LEN + U128_BASE62_LEN:
            raise ValueError(
                f"invalid invocation id {text!r}: "
                f"expected {INVOCATION_ID_STR_LEN} characters, got {len(text)}"
            )
        try:
            pk = base62_decode(body[:U64_BASE62_LEN], 8)
            uuid = base62_decode(body[U64_BASE62_LEN:], 16)
        except ValueError as e:
            raise ValueError(f"invalid invocation id {text!r}: {e}") from None
        return cls(pk, uuid)

    # -- constructors

    @classmethod
    def generate(
        cls, partition_key: int, *, timestamp_ms: int | None = None, randomness: int | None = None
    ) -> InvocationId:
        """A fresh id with a ULID uuid (for invocations without workflow key or idempotency key)."""
        return cls(partition_key, new_ulid(timestamp_ms, randomness))

    @classmethod
    def for_workflow_run(cls, workflow_name: str, key: str) -> InvocationId:
        """The deterministic id of a workflow's run handler invocation (ignores any idempotency key)."""
        return cls(partition_key_for_key(key), workflow_run_uuid(workflow_name, key))

    @classmethod
    def for_idempotent_request(
        cls, service_name: str, handler_name: str, idempotency_key: str, key: str | None = None
    ) -> InvocationId:
        """The deterministic id of a request with an idempotency key; `key` for objects and workflows."""
        pk = (
            partition_key_for_key(key)
            if key is not None
            else idempotent_service_partition_key(service_name, idempotency_key)
        )
        return cls(pk, idempotent_request_uuid(service_name, handler_name, idempotency_key, key))

    @classmethod
    def for_target(
        cls,
        service_name: str,
        handler_name: str,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        workflow_run: bool = False,
    ) -> InvocationId:
        """The id Restate assigns a new invocation of this target (random only where Restate's is)."""
        if workflow_run:
            if key is None:
                raise ValueError("a workflow run needs a key")
            return cls.for_workflow_run(service_name, key)
        if idempotency_key is not None:
            return cls.for_idempotent_request(service_name, handler_name, idempotency_key, key)
        pk = partition_key_for_key(key) if key is not None else random_service_partition_key(service_name)
        return cls.generate(pk)

    @classmethod
    def for_call(
        cls,
        caller: InvocationId,
        command_index: int,
        service_name: str,
        handler_name: str,
        *,
        timestamp_ms: int,
        key: str | None = None,
        idempotency_key: str | None = None,
        workflow_run: bool = False,
    ) -> InvocationId:
        """The id of the invocation a handler's call or one-way send creates, without any randomness.

        Workflow runs and idempotent calls keep their deterministic ids. Any other callee's uuid is still a
        ULID, its time `timestamp_ms` and its 80 "random" bits taken from SHA-256 over the caller's id and the
        call's journal index, which no other call shares: applying the same call twice (a replica, a batch
        applied again after a failed commit) names the same callee. The same hash picks a plain service's
        partition key bucket, as a random draw would. A caller id can come back after its retention (same
        workflow key, same idempotency key); its calls then differ in the ULID time.
        """
        if workflow_run or idempotency_key is not None:
            return cls.for_target(
                service_name,
                handler_name,
                key=key,
                idempotency_key=idempotency_key,
                workflow_run=workflow_run,
            )
        if not 0 <= command_index <= 0xFFFF_FFFF:
            raise ValueError(f"command index out of u32 range: {command_index}")
        digest = hashlib.sha256(b"call" + caller.to_bytes() + command_index.to_bytes(4, "big")).digest()
        if key is not None:
            pk = partition_key_for_key(key)
        else:
            bucket = int.from_bytes(digest[10:12], "big") % UNSCOPED_SERVICE_BUCKETS
            pk = unscoped_service_partition_key(service_name, bucket)
        return cls(pk, new_ulid(timestamp_ms, int.from_bytes(digest[:10], "big")))

    # -- derived values

    @property
    def timestamp_ms(self) -> int:
        """Creation time in ms, meaningful only for ULID-based (non-deterministic) ids."""
        return ulid_timestamp_ms(self.uuid)

    def random_seed(self) -> int:
        """The `StartMessage.random_seed` a Restate 1.7 server sends by default: Rust's `DefaultHasher`
        (SipHash-1-3, zero keys) over the 24-byte id array, which Rust prefixes with its length as u64."""
        return siphash13(len(self.to_bytes()).to_bytes(8, "little") + self.to_bytes())

    def v5_random_seed(self) -> int:
        """The seed SDKs derive themselves under protocol V5: SHA-256 of the raw id, first 8 bytes BE."""
        return int.from_bytes(hashlib.sha256(self.to_bytes()).digest()[:8], "big")


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _U64_MAX


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 (one compression round, three finalisation rounds), as Rust's std hasher."""
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def sip_round() -> None:
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & _U64_MAX
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & _U64_MAX
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & _U64_MAX
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & _U64_MAX
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)

    n = len(data)
    whole = n - n % 8
    for i in range(0, whole, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        sip_round()
        v0 ^= m
    last = ((n & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v3 ^= last
    sip_round()
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        sip_round()
    return v0 ^ v1 ^ v2 ^ v3


# ---------------------------------------------------------------------------------------------------------
# awakeable ids


def awakeable_id(invocation_id: InvocationId, signal_index: int) -> str:
    """`sign_1` + unpadded base64url of (24-byte invocation id ‖ u32 BE signal index)."""
    if not 0 <= signal_index <= 0xFFFF_FFFF:
        raise ValueError(f"signal index out of u32 range: {signal_index}")
    raw = invocation_id.to_bytes() + signal_index.to_bytes(4, "big")
    return AWAKEABLE_ID_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def parse_awakeable_id(text: str) -> tuple[InvocationId, int]:
    """Invocation id and index of a `sign_1…` id (padded or not) or of a legacy `prom_1…` id.

    For `prom_1` ids the index is the journal entry index of the old protocol; check the prefix
    (`LEGACY_AWAKEABLE_ID_PREFIX`) if the difference matters.
    """
    if not isinstance(text, str):
        raise ValueError(f"awakeable id must be a string, got {type(text).__name__}")
    for prefix in (AWAKEABLE_ID_PREFIX, LEGACY_AWAKEABLE_ID_PREFIX):
        if text.startswith(prefix):
            body = text[len(prefix) :]
            break
    else:
        raise ValueError(
            f"invalid awakeable id {text!r}: expected prefix {AWAKEABLE_ID_PREFIX!r} "
            f"or {LEGACY_AWAKEABLE_ID_PREFIX!r}"
        )
    unpadded = body.rstrip("=")
    # b64decode with altchars would also take "+" and "/"; the URL-safe alphabet is all Restate emits.
    if not _BASE64URL_RE.fullmatch(unpadded):
        raise ValueError(f"invalid awakeable id {text!r}: not base64url")
    try:
        raw = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"invalid awakeable id {text!r}: not base64url ({e})") from None
    if len(raw) != INVOCATION_ID_BYTES + 4:
        raise ValueError(
            f"invalid awakeable id {text!r}: decodes to {len(raw)} bytes, expected {INVOCATION_ID_BYTES + 4}"
        )
    index = int.from_bytes(raw[INVOCATION_ID_BYTES:], "big")
    return InvocationId.from_bytes(raw[:INVOCATION_ID_BYTES]), index


# ---------------------------------------------------------------------------------------------------------
# ULID-backed resource ids


@dataclass(frozen=True, slots=True, order=True)
class _UlidId:
    ulid: int
    PREFIX: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if not 0 <= self.ulid <= _U128_MAX:
            raise ValueError(f"{type(self).__name__} out of u128 range: {self.ulid}")

    def __str__(self) -> str:
        return self.PREFIX + base62_encode(self.ulid, 16)

    @classmethod
    def parse(cls, text: str) -> Self:
        body = _strip_prefix(text, cls.PREFIX, cls.__name__)
        try:
            return cls(base62_decode(body, 16))
        except ValueError as e:
            raise ValueError(f"invalid {cls.__name__} {text!r}: {e}") from None

    @classmethod
    def generate(cls, *, timestamp_ms: int | None = None, randomness: int | None = None) -> Self:
        return cls(new_ulid(timestamp_ms, randomness))

    @property
    def timestamp_ms(self) -> int:
        return ulid_timestamp_ms(self.ulid)


@dataclass(frozen=True, slots=True, order=True)
class DeploymentId(_UlidId):
    """`dp_1` + 22 base62 characters of a ULID."""

    PREFIX: ClassVar[str] = DEPLOYMENT_ID_PREFIX


@dataclass(frozen=True, slots=True, order=True)
class SubscriptionId(_UlidId):
    """`sub_1` + 22 base62 characters of a ULID."""

    PREFIX: ClassVar[str] = SUBSCRIPTION_ID_PREFIX
