"""Validation of textual resource ids with the reasons Restate reports. Pure code: no IO.

Only the shape is checked (prefix, scheme version, base62 / base64 payload, length); the engine owns
what an id means. The reason strings are Restate's: they end up in 400 bodies such as
``bad invocation id 'x': bad format``.
"""

from __future__ import annotations

import base64
import binascii

BASE62_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BASE62 = {c: i for i, c in enumerate(BASE62_ALPHABET)}
_KNOWN_PREFIXES = ("inv", "dp", "sub", "prom", "sign", "snap", "mut", "vq")


class IdDecodeError(ValueError):
    BAD_LENGTH = "bad length"
    CODEC = "base62 decode error"
    FORMAT = "bad format"
    VERSION = "unrecognized codec version"
    TYPE_MISMATCH = "id doesn't match the expected type"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _split(text: str) -> tuple[str, str]:
    """(resource prefix, payload after the scheme version)."""
    if not text:
        raise IdDecodeError(IdDecodeError.BAD_LENGTH)
    if "_" not in text:
        raise IdDecodeError(IdDecodeError.FORMAT)
    prefix, rest = text.split("_", 1)
    if prefix not in _KNOWN_PREFIXES:
        raise IdDecodeError(f"unrecognized resource type: {prefix}")
    if not rest:
        raise IdDecodeError(IdDecodeError.BAD_LENGTH)
    if rest[0] != "1":
        raise IdDecodeError(IdDecodeError.VERSION)
    return prefix, rest[1:]


def _base62_fixed(chunk: str, nbytes: int) -> None:
    n = 0
    for c in chunk:
        d = _BASE62.get(c)
        if d is None:
            raise IdDecodeError(IdDecodeError.CODEC)
        n = n * 62 + d
    if n >> (8 * nbytes):
        raise IdDecodeError(IdDecodeError.CODEC)


def _base62_payload(payload: str, widths: tuple[tuple[int, int], ...]) -> None:
    pos = 0
    for chars, nbytes in widths:
        chunk = payload[pos : pos + chars]
        if len(chunk) != chars:
            raise IdDecodeError(IdDecodeError.BAD_LENGTH)
        _base62_fixed(chunk, nbytes)
        pos += chars
    if pos != len(payload):
        raise IdDecodeError(IdDecodeError.BAD_LENGTH)


def check_invocation_id(text: str) -> str:
    """`inv_1` + base62(u64, 11) + base62(u128, 22); returns the text or raises IdDecodeError."""
    prefix, payload = _split(text)
    if prefix != "inv":
        raise IdDecodeError(IdDecodeError.TYPE_MISMATCH)
    _base62_payload(payload, ((11, 8), (22, 16)))
    return text


def check_deployment_id(text: str) -> str:
    """`dp_1` + base62(u128 ULID, 22)."""
    prefix, payload = _split(text)
    if prefix != "dp":
        raise IdDecodeError(IdDecodeError.TYPE_MISMATCH)
    _base62_payload(payload, ((22, 16),))
    return text


def check_awakeable_id(text: str) -> str:
    """`sign_1`/`prom_1` + base64url-no-pad(24-byte invocation id ‖ u32 index)."""
    prefix, payload = _split(text)
    if prefix not in ("sign", "prom"):
        raise IdDecodeError(IdDecodeError.TYPE_MISMATCH)
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError):
        raise IdDecodeError(IdDecodeError.TYPE_MISMATCH) from None
    if len(raw) != 28:
        raise IdDecodeError(IdDecodeError.TYPE_MISMATCH)
    return text
