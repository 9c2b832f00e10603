"""Hypothesis over real HTTP against a running pyrestate server: random requests to every ingress and admin
route. Each one must get a well-formed answer (errors: 4xx/5xx with a JSON or text message, never the
"internal routing error" of an unhandled exception), the server log must hold no traceback, and afterwards
the state and invocation written before the fuzz read back intact.

`PYRESTATE_FUZZ_SCALE=20 pytest tests/fuzz` runs 20 times as many examples."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fuzz_app import app as fuzz_app
from fuzz_counts import count
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrestate.testing import LocalRestate, local_restate

pytestmark = pytest.mark.timeout(600)

SCALE = float(os.environ.get("PYRESTATE_FUZZ_SCALE", "1"))
KNOWN_KEY = "known"
KNOWN_IDEMPOTENCY_KEY = "known-add"


def _settings(n: int) -> Any:
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


class Env:
    def __init__(self, env: LocalRestate) -> None:
        self.env = env
        self.ingress = httpx.Client(base_url=env.ingress_url, timeout=10.0)
        self.admin = httpx.Client(base_url=env.admin_url, timeout=30.0)
        self.known_invocation = ""
        self.deployment_id = ""
        self.previous = ""
        self.stale_connections = 0
        self.stale_after: list[str] = []

    def send(self, client: httpx.Client, request: httpx.Request) -> httpx.Response:
        """Send; a pooled keep-alive connection the server closed meanwhile is retried once on a new one
        (the request never reached the server), anything else fails the test."""
        try:
            r = client.send(request)
        except httpx.RemoteProtocolError:
            self.stale_connections += 1
            self.stale_after.append(self.previous)
            fresh = httpx.Client(timeout=30.0)
            try:
                r = fresh.send(request)
                r.read()
            finally:
                fresh.close()
        self.previous = f"{request.method} {request.url} -> {r.status_code}"
        return r


@pytest.fixture(scope="module")
def fuzz_env() -> Iterator[Env]:
    with local_restate(fuzz_app) as env:
        e = Env(env)
        r = e.ingress.post(
            f"/FuzzCounter/{KNOWN_KEY}/add",
            content=b"7",
            headers={"content-type": "text/plain", "idempotency-key": KNOWN_IDEMPOTENCY_KEY},
        )
        assert r.status_code == 200 and r.content == b"7", r.text
        e.known_invocation = r.headers["x-restate-id"]
        e.deployment_id = e.admin.get("/deployments").json()["deployments"][0]["id"]
        try:
            yield e
            check_known_state_intact(e)
            print(f"\nkeep-alive connections found closed and retried: {e.stale_connections} {e.stale_after}")
        finally:
            e.ingress.close()
            e.admin.close()


def check_known_state_intact(e: Env) -> None:
    r = e.ingress.post(f"/FuzzCounter/{KNOWN_KEY}/get")
    assert (r.status_code, r.content) == (200, b"7"), r.text
    r = e.ingress.get(f"/restate/invocation/{e.known_invocation}/output")
    assert (r.status_code, r.content) == (200, b"7"), r.text
    r = e.ingress.get(f"/restate/invocation/FuzzCounter/{KNOWN_KEY}/add/{KNOWN_IDEMPOTENCY_KEY}/attach")
    assert (r.status_code, r.content) == (200, b"7"), r.text
    rows = e.env.admin.query(
        f"SELECT service_key, value_utf8 FROM state WHERE service_name = 'FuzzCounter' "
        f"AND service_key = '{KNOWN_KEY}'"
    )
    assert rows == [{"service_key": KNOWN_KEY, "value_utf8": "7"}], rows
    log = e.env.runtime.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
    assert e.env.runtime.process.is_running()


def check_answer(r: httpx.Response, where: str, server_errors: tuple[int, ...] = (501, 503)) -> None:
    """A client error or a clear server error; never an unhandled exception."""
    assert 100 <= r.status_code <= 599
    if r.status_code < 400:
        return
    ct = r.headers.get("content-type", "")
    if ct.startswith("application/json"):
        body = r.json()
        assert isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"], r.text
        assert "internal routing error" not in body["message"], f"{where}: {r.text}"
        assert "internal error" not in body["message"], f"{where}: {r.text}"
    elif r.content:
        assert ct.startswith("text/plain"), f"{where}: {r.status_code} {ct} {r.text[:200]}"
    else:  # bare statuses Restate also answers without a body
        assert r.status_code in (404, 405), f"{where}: {r.status_code} without a message"
    if r.status_code >= 500:
        # Handlers here fail only terminally with 400: a 5xx is the server's own failure.
        assert r.status_code in server_errors, f"{where}: {r.status_code} {r.text[:300]}"


# ----------------------------------------------------------------------------------------------- ingress

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def _segment(text: str) -> str:
    return quote(text, safe="!$&'()*+,;=:@~")


_SEGMENT = (
    st.sampled_from(
        [
            "FuzzEcho",
            "FuzzCounter",
            "FuzzScratch",
            "echo",
            "add",
            "get",
            "poke",
            "send",
            "restate",
            "invocation",
            "workflow",
            "awakeables",
            "a",
            "call",
            "attach",
            "output",
            "lookup",
            "health",
            "resolve",
            "reject",
            "k1",
            "%20",
            "%FF",
            "%",
            "..",
            "inv_1",
            "sign_1",
            "Missing",
            "",
        ]
    )
    | _TEXT.map(_segment)
).filter(lambda s: s != KNOWN_KEY)
_QUERY = st.sampled_from(
    ["", "delay=", "delay=1s", "delay=PT1S", "delay=-1s", "delay=99999999999999999999w"]
) | (_TEXT.map(lambda s: "delay=" + quote(s)))
_HEADER_NAMES = st.sampled_from(
    [
        "content-type",
        "idempotency-key",
        "idempotency-expires",
        "accept",
        "origin",
        "x-restate-id",
        "access-control-request-method",
        "access-control-request-headers",
        "traceparent",
        "x-custom",
        "x-restate-signature-scheme",
        "x-restate-jwt-v1",
        "accept-encoding",
    ]
) | st.from_regex(r"[a-z][a-z0-9-]{0,14}", fullmatch=True).filter(
    lambda n: n not in ("content-length", "transfer-encoding", "host", "connection", "upgrade", "te")
)
_HEADER_VALUES = st.binary(max_size=30).map(
    lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip()
) | st.sampled_from([b"application/json", b"text/plain", b"*/*", b"", b"k1", b"a/b;c=d"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
_BODIES = (
    st.binary(max_size=64)
    | _JSON.map(lambda v: json.dumps(v).encode())
    | st.sampled_from([b"", b"1", b"[" * 5000, b'{"target":"invocation","invocationId":"inv_1"}'])
)


@_settings(2000)
@given(
    method=st.sampled_from(["GET", "POST", "POST", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    segments=st.lists(_SEGMENT, min_size=1, max_size=7),
    query=_QUERY,
    headers=st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=4),
    body=_BODIES,
)
def test_ingress_answers_every_request(
    fuzz_env: Env,
    method: str,
    segments: list[str],
    query: str,
    headers: list[tuple[str, bytes]],
    body: bytes,
) -> None:
    count("http_ingress")
    path = "/" + "/".join(segments)
    url = path + ("?" + query if query else "")
    request = fuzz_env.ingress.build_request(method, fuzz_env.env.ingress_url + url, content=body or None)
    for name, value in headers:
        request.headers[name] = value.decode("latin-1")
    r = fuzz_env.send(fuzz_env.ingress, request)
    check_answer(r, f"{method} {url} {headers} {body[:60]!r}")
    if r.status_code >= 400:
        assert r.headers.get("content-type") == "application/json", r.text


# ------------------------------------------------------------------------------------------------- admin

_ADMIN_PATHS = st.sampled_from(
    [
        "/deployments",
        "/deployments/{dp}",
        "/deployments/dp_1x",
        "/deployments/{text}",
        "/services",
        "/services/FuzzScratch",
        "/services/Missing",
        "/services/{text}",
        "/services/FuzzScratch/state",
        "/services/FuzzEcho/state",
        "/services/{text}/state",
        "/services/FuzzScratch/handlers",
        "/services/FuzzScratch/handlers/{text}",
        "/services/FuzzScratch/openapi",
        "/invocations/{text}",
        "/invocations/{inv}",
        "/invocations/{inv}/{verb}",
        "/invocations/{text}/{verb}",
        "/version",
        "/health",
        "/openapi",
        "/query",
        "/{text}",
        "/v1/services",
        "/v9/health",
        "/v²/health",
        "/v99999999999999999999999/health",
    ]
)
_VERBS = st.sampled_from(
    ["cancel", "kill", "purge", "purge-journal", "resume", "pause", "restart-as-new", ""]
)
_DURATION_TEXT = (
    st.sampled_from(["1s", "0s", "PT1M", "-1s", "1" * 50 + "s", "99999999999999999999w", "x"]) | _TEXT
)
_ADMIN_BODIES = st.one_of(
    _JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "uri": st.sampled_from(["", "http://", "ftp://x", "http://[", "http://h:99999", "https://"])
            | _TEXT,
            "additional_headers": st.dictionaries(_TEXT, _TEXT | _JSON, max_size=2) | _JSON,
            "force": _JSON,
            "dry_run": _JSON,
            "use_http_11": _JSON,
            "public": _JSON,
            "idempotency_retention": _DURATION_TEXT | _JSON,
            "inactivity_timeout": _DURATION_TEXT | _JSON,
            "journal_retention": _DURATION_TEXT | _JSON,
            "object_key": _TEXT | _JSON,
            "new_state": st.dictionaries(
                _TEXT, st.lists(st.integers(-5, 300), max_size=4) | _JSON, max_size=3
            ),
            "version": _JSON,
        },
    ),
)


@_settings(1500)
@given(
    method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]),
    template=_ADMIN_PATHS,
    text=_TEXT.map(_segment),
    verb=_VERBS,
    query=st.sampled_from(
        ["", "force=true", "force=false", "mode=kill", "mode=x", "deployment=latest", "x=%FF"]
    ),
    body=st.one_of(_ADMIN_BODIES.map(lambda v: json.dumps(v).encode()), st.binary(max_size=40)),
    content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", None]),
    random_inv=st.from_regex(r"inv_1[0-9a-zA-Z]{33}", fullmatch=True),
)
def test_admin_answers_every_request(
    fuzz_env: Env,
    method: str,
    template: str,
    text: str,
    verb: str,
    query: str,
    body: bytes,
    content_type: str | None,
    random_inv: str,
) -> None:
    count("http_admin")
    path = template.format(dp=fuzz_env.deployment_id, text=text, inv=random_inv, verb=verb)
    if method == "DELETE" and path.startswith("/deployments/") and "force=true" in query:
        return  # a legitimate force delete of our deployment would unregister the services under test
    headers = {"content-type": content_type} if content_type else {}
    url = fuzz_env.env.admin_url + path + ("?" + query if query else "")
    r = fuzz_env.send(
        fuzz_env.admin, fuzz_env.admin.build_request(method, url, content=body, headers=headers)
    )
    check_answer(r, f"{method} {path}?{query} {body[:80]!r}")


@_settings(25)
@given(
    sql=st.sampled_from(
        [
            "SELECT * FROM sys_invocation",
            "SELECT 1/0",
            "DROP TABLE state",
            "SELECT * FROM nope",
            "'",
            "",
            "SELECT * FROM state WHERE key = '",
            "/*",
            "SELECT count(*) FROM sys_journal",
        ]
    )
    | _TEXT,
    accept=st.sampled_from(["application/json", "*/*", "text/csv", ""]),
)
def test_admin_query_answers_every_sql_text(fuzz_env: Env, sql: str, accept: str) -> None:
    count("http_query")
    r = fuzz_env.admin.post("/query", json={"query": sql}, headers={"accept": accept} if accept else {})
    # Like Restate, a query failing while it executes (e.g. a division by zero) is a 500 naming DataFusion.
    check_answer(r, f"query {sql!r}", (500, 501, 503))
    if r.status_code == 500:
        assert r.json()["message"].startswith("Datafusion error: "), r.text


# ---------------------------------------------------------------------------------------- regressions


def test_regression_astronomic_delay_answers_400_and_stores_nothing(fuzz_env: Env) -> None:
    r = fuzz_env.ingress.post("/FuzzEcho/echo/send?delay=99999999999999999999w", content=b"x")
    assert r.status_code == 400, r.text
    assert "too large" in r.json()["message"]


def test_regression_deep_json_answers_400(fuzz_env: Env) -> None:
    deep = b"[" * 100_000
    r = fuzz_env.ingress.post("/restate/attach", content=deep)
    assert r.status_code == 400 and "nested too deeply" in r.json()["message"], r.text
    r = fuzz_env.admin.post(
        "/services/FuzzScratch/state", content=deep, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "nested too deeply" in r.text, r.text


def test_regression_admin_state_value_must_be_a_byte_list(fuzz_env: Env) -> None:
    """Bug: `bytes(v)` of a JSON integer allocated that many zero bytes (a 10 GB request in 60 bytes)."""
    r = fuzz_env.admin.post(
        "/services/FuzzScratch/state", json={"object_key": "s", "new_state": {"k": 10_000_000_000}}
    )
    assert r.status_code == 422, r.text


def test_regression_admin_unicode_digit_version_prefix(fuzz_env: Env) -> None:
    """Bug: `/v²/…` passed str.isdigit() and crashed int(): an internal error instead of a 404."""
    r = fuzz_env.admin.get("/v%C2%B2/health")
    assert r.status_code == 404
    r = fuzz_env.admin.get("/v" + "9" * 5000 + "/health")
    assert r.status_code == 400 and "Unsupported admin API version" in r.json()["message"]


def test_regression_overlong_duration_in_service_patch_is_422(fuzz_env: Env) -> None:
    r = fuzz_env.admin.patch("/services/FuzzScratch", json={"inactivity_timeout": "1" * 5000 + "s"})
    assert r.status_code == 422, r.text
