"""Request identity: the server signs every request it sends to a deployment, so a deployment configured
with the matching public key accepts only this server's requests.

Restate's scheme v1: headers `x-restate-signature-scheme: v1` and `x-restate-jwt-v1: <JWT>`, an EdDSA
(Ed25519) JWT whose `aud` is the request path relative to the registered URI (`/discover`,
`/invoke/{service}/{handler}`), with `iat`, `nbf` and `exp`. The public key is given to SDKs as
`publickeyv1_<base58 of the 32 raw key bytes>`.

The private key is a PKCS#8 PEM file, e.g. from `openssl genpkey -algorithm ed25519 -out key.pem`;
`python -m pyrestate.server.invoker.identity key.pem` prints its public key.
"""

from __future__ import annotations

import base64
import functools
import json
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from pyrestate.protocol.identity import JWT_V1_HEADER, SCHEME_V1, SIGNATURE_SCHEME_HEADER, identity_key_of

# A token is valid from a minute before to a minute after it is made: tolerates clock skew between the
# server and the deployment (the SDKs check nbf and exp without leeway) while keeping replays short.
VALIDITY_SECONDS = 60


def load_signer(path: Path | str | None) -> RequestSigner | None:
    """The signer of a configured key file (None: requests go unsigned); loaded once per path."""
    return None if path is None else _load_cached(str(path))


@functools.lru_cache(maxsize=8)
def _load_cached(path: str) -> RequestSigner:
    return RequestSigner.from_pem_file(path)


class IdentityKeyFileError(ValueError):
    """The configured private key file is missing or not an Ed25519 private key."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class RequestSigner:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = identity_key_of(private_key.public_key())
        header = {"typ": "JWT", "alg": "EdDSA", "kid": self.public_key}
        self._header = _b64url(json.dumps(header, separators=(",", ":")).encode())

    @classmethod
    def from_pem_file(cls, path: Path | str) -> RequestSigner:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise IdentityKeyFileError(f"cannot read the request identity key {str(path)!r}: {e}") from None
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise IdentityKeyFileError(
                f"{str(path)!r} is not a PEM private key without password: {e}"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityKeyFileError(f"{str(path)!r} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    def token(self, audience: str, now: float | None = None) -> str:
        t = int(time.time() if now is None else now)
        claims = {"aud": audience, "iat": t, "nbf": t - VALIDITY_SECONDS, "exp": t + VALIDITY_SECONDS}
        signed = f"{self._header}.{_b64url(json.dumps(claims, separators=(',', ':')).encode())}"
        return f"{signed}.{_b64url(self._key.sign(signed.encode('ascii')))}"

    def headers(self, audience: str) -> list[tuple[str, str]]:
        """Headers of a request to `audience`, the path relative to the deployment's registered URI."""
        return [(SIGNATURE_SCHEME_HEADER, SCHEME_V1), (JWT_V1_HEADER, self.token(audience))]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m pyrestate.server.invoker.identity PRIVATE_KEY_PEM_FILE", file=sys.stderr)
        return 2
    try:
        print(RequestSigner.from_pem_file(args[0]).public_key)
    except IdentityKeyFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
