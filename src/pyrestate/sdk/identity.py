"""Request identity verification for endpoints. The code lives in `pyrestate.protocol.identity`, shared
with the server's request signer; this module keeps the SDK's import path."""

from pyrestate.protocol.identity import (
    JWT_V1_HEADER,
    KEY_PREFIX,
    SCHEME_UNSIGNED,
    SCHEME_V1,
    SIGNATURE_SCHEME_HEADER,
    IdentityKeyError,
    IdentityVerificationError,
    IdentityVerifier,
    b58decode,
    b58encode,
    identity_key_of,
    normalise_path,
    parse_identity_key,
)

__all__ = [
    "JWT_V1_HEADER",
    "KEY_PREFIX",
    "SCHEME_UNSIGNED",
    "SCHEME_V1",
    "SIGNATURE_SCHEME_HEADER",
    "IdentityKeyError",
    "IdentityVerificationError",
    "IdentityVerifier",
    "b58decode",
    "b58encode",
    "identity_key_of",
    "normalise_path",
    "parse_identity_key",
]
