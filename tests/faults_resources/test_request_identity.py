"""Request identity: a server started with an Ed25519 key signs discovery and invocations; our SDK and the
official SDK, configured with the public key, accept them and refuse (401) an unsigned or foreign server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

import pyrestate.sdk as restate
from pyrestate.protocol.identity import IdentityVerifier, identity_key_of
from pyrestate.server.config import ConfigError, ServerConfig, from_env, from_values, parse_bind
from pyrestate.server.invoker.identity import IdentityKeyFileError, RequestSigner
from pyrestate.testing import (
    InProcessApp,
    OfficialRestateServer,
    PyrestateServer,
    RuntimeConfig,
    ServiceApp,
    make_runtime,
)

pytestmark = pytest.mark.timeout(180)

HERE = Path(__file__).parent
KEY_ENV = "PYRESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE"


def write_key(path: Path) -> str:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return identity_key_of(key.public_key())


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "identity.pem"
    return path, write_key(path)


# -------------------------------------------------------------------------------------------- pure parts


def test_signed_headers_verify_with_the_sdk_verifier(key_file: tuple[Path, str]) -> None:
    path, public = key_file
    signer = RequestSigner.from_pem_file(path)
    assert signer.public_key == public
    verifier = IdentityVerifier([public])
    headers = dict(signer.headers("/invoke/Greeter/greet"))
    verifier.verify(headers, "/prefix/invoke/Greeter/greet")
    with pytest.raises(Exception, match="audience"):
        verifier.verify(headers, "/invoke/Greeter/other")
    with pytest.raises(Exception, match="expired"):
        verifier.verify(dict(signer.headers("/discover")), "/discover", now=10**10)
    foreign = IdentityVerifier([write_key(path.with_name("other.pem"))])
    with pytest.raises(Exception, match="none of the identity keys"):
        foreign.verify(headers, "/invoke/Greeter/greet")


def test_public_key_cli_matches_and_bad_key_files_are_refused(
    key_file: tuple[Path, str], tmp_path: Path
) -> None:
    path, public = key_file
    out = subprocess.run(
        [sys.executable, "-m", "pyrestate.server.invoker.identity", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == public
    if shutil.which("openssl"):  # the documented way of making a key
        made = tmp_path / "openssl.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(made)], check=True)
        assert RequestSigner.from_pem_file(made).public_key.startswith("publickeyv1_")
    (tmp_path / "junk.pem").write_text("not a key")
    for bad in (tmp_path / "junk.pem", tmp_path / "missing.pem"):
        with pytest.raises(IdentityKeyFileError):
            RequestSigner.from_pem_file(bad)
        with pytest.raises(ConfigError, match="--request-identity-private-key-pem-file"):
            from_values({"request_identity_private_key_pem_file": str(bad)})
    cfg = from_env({KEY_ENV: str(path)})
    assert cfg.request_identity_private_key_pem_file == path


def test_admin_and_ingress_bind_to_loopback_by_default() -> None:
    for bind in (ServerConfig().admin_bind, ServerConfig().ingress_bind, from_env({}).admin_bind):
        assert parse_bind(bind)[0] == "127.0.0.1"


# ------------------------------------------------------------------------------------- end to end (ours)

greeter = restate.Service("IdentityGreeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"hello {name}"


@contextmanager
def _server(tmp_path: Path, key: Path | None) -> Iterator[OfficialRestateServer | PyrestateServer]:
    env = {KEY_ENV: str(key)} if key is not None else {}
    rt = make_runtime("pyrestate", RuntimeConfig(extra_env=env), data_dir=tmp_path / "rt")
    rt.start()
    try:
        yield rt
    finally:
        rt.close()


def _register(admin_url: str, uri: str) -> httpx.Response:
    return httpx.post(f"{admin_url}/deployments", json={"uri": uri, "force": True}, timeout=30)


def test_our_sdk_accepts_the_signed_server_and_refuses_others(
    key_file: tuple[Path, str], tmp_path: Path
) -> None:
    path, public = key_file
    app = InProcessApp(restate.app([greeter], identity_keys=[public]))
    app.start()
    try:
        with _server(tmp_path / "signed", path) as rt:
            r = _register(rt.admin_url, app.url)
            assert r.status_code == 201, r.text
            out = httpx.post(f"{rt.ingress_url}/IdentityGreeter/greet", json="ada", timeout=30)
            assert (out.status_code, out.json()) == (200, "hello ada"), out.text
        with _server(tmp_path / "unsigned", None) as rt:
            r = _register(rt.admin_url, app.url)
            assert r.status_code == 500 and "[META0003]" in r.text and "401" in r.text, r.text
        foreign = tmp_path / "foreign.pem"
        write_key(foreign)
        with _server(tmp_path / "foreign", foreign) as rt:
            r = _register(rt.admin_url, app.url)
            assert r.status_code == 500 and "[META0003]" in r.text and "401" in r.text, r.text
        # The SDK itself answers 401 to an unsigned invocation.
        direct = httpx.post(f"{app.url}/invoke/IdentityGreeter/greet", content=b"", timeout=10)
        assert direct.status_code == 401
    finally:
        app.stop()


def test_official_sdk_accepts_our_signatures(key_file: tuple[Path, str], tmp_path: Path) -> None:
    path, public = key_file
    app = ServiceApp(
        "resfaults_identity_official:app", env={"IDENTITY_KEY": public}, pythonpath=[HERE], log_dir=tmp_path
    )
    app.start()
    try:
        with _server(tmp_path / "signed", path) as rt:
            r = _register(rt.admin_url, app.url)
            assert r.status_code == 201, r.text
            out = httpx.post(f"{rt.ingress_url}/OfficialIdentityGreeter/greet", json="bo", timeout=30)
            assert (out.status_code, out.json()) == (200, "hello bo"), out.text
        with _server(tmp_path / "unsigned", None) as rt:
            r = _register(rt.admin_url, app.url)
            assert r.status_code == 500 and "[META0003]" in r.text and "401" in r.text, r.text
    finally:
        app.close()
