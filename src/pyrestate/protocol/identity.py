"""Request identity verification: the runtime signs every request it sends to a deployment with an Ed25519
key; the endpoint accepts only requests whose JWT one of its configured public keys verifies.

Headers: `x-restate-signature-scheme: v1` and `x-restate-jwt-v1: <JWT, alg EdDSA>`. The claims `aud`, `exp`,
`iat` and `nbf` are required; `aud` must equal the request path with any registration prefix removed
(`/invoke/{service}/{handler}` or `/discover`); `exp` and `nbf` are checked without leeway. Public keys are
written `publickeyv1_<base58 of the 32 raw key bytes>`.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SIGNATURE_SCHEME_HEADER = "x-restate-signature-scheme"
JWT_V1_HEADER = "x-restate-jwt-v1"
SCHEME_V1 = "v1"
SCHEME_UNSIGNED = "unsigned"
KEY_PREFIX = "publickeyv1_"
_REQUIRED_CLAIMS = ("aud", "exp", "iat", "nbf")

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


class IdentityKeyError(ValueError):
    """A configured identity key is malformed."""


class IdentityVerificationError(Exception):
    """The request is not signed by any configured key (the endpoint answers 401)."""


def b58decode(text: str) -> bytes:
    """Bitcoin-alphabet base58; each leading '1' is a leading zero byte."""
    n = 0
    for c in text:
        try:
            n = n * 58 + _B58_INDEX[c]
        except KeyError:
            raise ValueError(f"invalid base58 character {c!r}") from None
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\x00" * zeros + body


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * zeros + "".join(reversed(out))


def parse_identity_key(key: str) -> Ed25519PublicKey:
    if not key.startswith(KEY_PREFIX):
        raise IdentityKeyError(f"identity keys must start with {KEY_PREFIX!r}")
    try:
        raw = b58decode(key[len(KEY_PREFIX) :])
    except ValueError as e:
        raise IdentityKeyError(f"identity key is not valid base58: {e}") from None
    if len(raw) != 32:
        raise IdentityKeyError(f"an identity key decodes to 32 bytes, this one to {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def identity_key_of(public_key: Ed25519PublicKey) -> str:
    """The `publickeyv1_…` text of a public key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return KEY_PREFIX + b58encode(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def normalise_path(path: str) -> str:
    """The audience a request path must be signed for: the path without the registration prefix."""
    slashes = [i for i, c in enumerate(path) if c == "/"]
    if len(slashes) >= 3 and path[slashes[-3] : slashes[-2]] == "/invoke":
        return path[slashes[-3] :]
    if slashes and path[slashes[-1] :] == "/discover":
        return path[slashes[-1] :]
    return path


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class IdentityVerifier:
    """Checks requests against a set of public keys; with no keys every request passes."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = [parse_identity_key(k) for k in keys]

    def verify(self, headers: Mapping[str, str], path: str, now: float | None = None) -> None:
        """Raise IdentityVerificationError unless the request is acceptable (`headers`: lower-case names)."""
        if not self.keys:
            return
        scheme = headers.get(SIGNATURE_SCHEME_HEADER)
        if scheme is None:
            raise IdentityVerificationError(f"missing header {SIGNATURE_SCHEME_HEADER}")
        if scheme == SCHEME_UNSIGNED:
            raise IdentityVerificationError("unsigned request, but only signed requests are accepted")
        if scheme != SCHEME_V1:
            raise IdentityVerificationError(f"unexpected {SIGNATURE_SCHEME_HEADER} {scheme!r}")
        token = headers.get(JWT_V1_HEADER)
        if token is None:
            raise IdentityVerificationError(f"missing header {JWT_V1_HEADER}")
        self._check_jwt(token, normalise_path(path), time.time() if now is None else now)

    def _check_jwt(self, token: str, audience: str, now: float) -> None:
        parts = token.split(".")
        if len(parts) != 3:
            raise IdentityVerificationError("malformed JWT")
        try:
            header: Any = json.loads(_b64url(parts[0]))
            claims: Any = json.loads(_b64url(parts[1]))
            signature = _b64url(parts[2])
        except (ValueError, binascii.Error) as e:
            raise IdentityVerificationError(f"malformed JWT: {e}") from None
        if not isinstance(header, dict) or header.get("alg") != "EdDSA":
            raise IdentityVerificationError("JWT must be signed with alg EdDSA")
        signed = f"{parts[0]}.{parts[1]}".encode("ascii")
        if not any(_verifies(k, signature, signed) for k in self.keys):
            raise IdentityVerificationError("JWT signature matches none of the identity keys")
        if not isinstance(claims, dict):
            raise IdentityVerificationError("JWT claims are not an object")
        missing = [c for c in _REQUIRED_CLAIMS if c not in claims]
        if missing:
            raise IdentityVerificationError(f"JWT lacks required claim(s) {', '.join(missing)}")
        exp, nbf = claims["exp"], claims["nbf"]
        if not _is_number(exp) or exp < now:
            raise IdentityVerificationError("JWT expired")
        if not _is_number(nbf) or nbf > now:
            raise IdentityVerificationError("JWT not valid yet")
        aud = claims["aud"]
        audiences = aud if isinstance(aud, list) else [aud]
        if audience not in audiences:
            raise IdentityVerificationError(f"JWT audience {aud!r} does not match {audience!r}")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _verifies(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


__all__ = [
    "IdentityKeyError",
    "IdentityVerificationError",
    "IdentityVerifier",
    "identity_key_of",
    "normalise_path",
    "parse_identity_key",
]
