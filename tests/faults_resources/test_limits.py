"""Limits that answer: a state value or an output over the message size limit, an object key over the key
limit and request headers over the header limits fail the invocation (or the ingress request) at once with a
clear error, never in a retry loop that leaves the caller waiting.

The message size limit is lowered to 1 MiB so the attacks stay small; the other limits are the defaults.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from resfaults_apps import limits_app

from pyrestate.testing import LocalRestate, RuntimeConfig, local_restate

pytestmark = pytest.mark.timeout(120)

MESSAGE_LIMIT = 1024 * 1024
KEY_LIMIT = 16 * 1024  # the default
# Well within the time the default retry policy (500 ms, doubling, 70 attempts) needs for a second attempt.
PROMPT_S = 5.0


@pytest.fixture(scope="module")
def env() -> Iterator[LocalRestate]:
    config = RuntimeConfig(extra_env={"PYRESTATE_MESSAGE_SIZE_LIMIT": "1MiB"})
    with local_restate(limits_app, config=config) as e:
        yield e


def _post(
    env: LocalRestate, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """A raw HTTP/1.1 POST (httpx refuses URLs over 64 KiB); (status, JSON body or text)."""
    url = urlsplit(env.ingress_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=PROMPT_S * 3)
    try:
        ct_header = {"content-type": "application/json"} if body else {}
        conn.request("POST", path, body=body, headers={**ct_header, **(headers or {})})
        r = conn.getresponse()
        text = r.read().decode()
        ct = r.getheader("content-type") or ""
        return r.status, (httpx.Response(200, content=text).json() if "json" in ct and text else text)
    finally:
        conn.close()


def _timed(f: Any) -> tuple[Any, float]:
    t0 = time.monotonic()
    result = f()
    return result, time.monotonic() - t0


def _invocations(env: LocalRestate, target: str) -> list[dict[str, Any]]:
    return env.admin.query(
        "SELECT status, retry_count, completion_result, completion_failure FROM sys_invocation "
        f"WHERE target = '{target}'"
    )


def test_state_value_over_the_message_limit_fails_at_once(env: LocalRestate) -> None:
    too_big = b"%d" % (MESSAGE_LIMIT + 10)
    (status, body), took = _timed(lambda: _post(env, "/LimitsObj/big/set_value", too_big))
    assert took < PROMPT_S, f"answered after {took:.1f}s"
    assert status == 500, body
    assert "message size limit exceeded" in body["message"], body
    assert "SET_STATE" in body["message"] and f"limit of {MESSAGE_LIMIT} bytes" in body["message"]
    rows = _invocations(env, "LimitsObj/big/set_value")
    assert [(r["status"], r["completion_result"]) for r in rows] == [("completed", "failure")], rows
    # Nothing of it was stored, and the object is not locked by a retrying invocation.
    assert _post(env, "/LimitsObj/big/value_size", b"") == (200, 0)
    fits = MESSAGE_LIMIT - 1024
    assert _post(env, "/LimitsObj/big/set_value", b"%d" % fits) == (200, fits)
    assert _post(env, "/LimitsObj/big/value_size", b"") == (200, fits)


def test_output_over_the_message_limit_fails_at_once(env: LocalRestate) -> None:
    (status, body), took = _timed(lambda: _post(env, "/LimitsSvc/output", b"%d" % (MESSAGE_LIMIT + 10)))
    assert took < PROMPT_S, f"answered after {took:.1f}s"
    assert status == 500 and "message size limit exceeded" in body["message"], body
    status, sent = _post(env, "/LimitsSvc/output/send", b"%d" % (2 * MESSAGE_LIMIT))
    assert status == 202, sent
    deadline = time.monotonic() + PROMPT_S
    while time.monotonic() < deadline:
        rows = env.admin.query(
            f"SELECT status, retry_count FROM sys_invocation WHERE id = '{sent['invocationId']}'"
        )
        if rows and rows[0]["status"] == "completed":
            break
        assert not rows or rows[0]["status"] != "backing-off", rows
        time.sleep(0.1)
    else:
        raise AssertionError(f"the sent invocation did not fail at once: {rows}")
    assert _post(env, "/LimitsSvc/output", b"1000")[0] == 200


def test_key_over_the_limit_is_refused_at_ingress(env: LocalRestate) -> None:
    for size in (KEY_LIMIT + 1, 70_000, 1_000_000):
        (status, body), took = _timed(lambda: _post(env, f"/LimitsObj/{'k' * size}/echo", b"1"))  # noqa: B023
        assert took < PROMPT_S, f"a key of {size} bytes answered after {took:.1f}s"
        if size == 1_000_000:
            # The request head itself is over the header section limit: refused before the path is read.
            assert status == 431, body
            continue
        assert status == 400, body
        assert body == {
            "code": 400,
            "message": f"bad path, the object key is {size} bytes long, over the limit of {KEY_LIMIT} bytes "
            "(key-size-limit)",
            "source": "ingress",
        }
    # Bytes, not characters: 6,000 three-byte characters are over 16 KiB.
    status, body = _post(env, "/LimitsObj/" + "%E2%82%AC" * 6000 + "/echo", b"1")
    assert status == 400 and "18000 bytes" in body["message"], body
    assert _post(env, f"/LimitsObj/{'k' * KEY_LIMIT}/echo", b"7") == (200, 7)
    # nothing of the refused keys was stored (matched by key length: a 70 KB literal is over /query's limit)
    stored = env.admin.query(
        "SELECT count(*) AS n FROM sys_invocation WHERE target_service_name = 'LimitsObj' "
        f"AND length(target_service_key) > {KEY_LIMIT}"
    )
    assert stored == [{"n": 0}]


def test_call_with_a_key_over_the_limit_fails_the_callee_at_once(env: LocalRestate) -> None:
    for size in (KEY_LIMIT + 1, 100_000):
        (status, body), took = _timed(lambda: _post(env, "/LimitsSvc/call_key", b"%d" % size))  # noqa: B023
        assert took < PROMPT_S, f"a call with a key of {size} bytes answered after {took:.1f}s"
        assert status == 200, body
        assert body == (
            f"400: the object key is {size} bytes long, over the limit of {KEY_LIMIT} bytes "
            "(key-size-limit); not retried"
        )
    # The connection to the deployment was not torn down by an oversized header: calls go on.
    assert _post(env, "/LimitsSvc/call_key", b"%d" % KEY_LIMIT) == (200, str(KEY_LIMIT))


def test_request_headers_over_the_limits_are_refused(env: LocalRestate) -> None:
    many = {f"x-h{i}": "v" for i in range(120)}
    status, body = _post(env, "/LimitsSvc/output", b"1", many)
    assert status == 431, body
    assert body["source"] == "ingress" and "headers, over the limit of 100" in body["message"], body
    status, body = _post(env, "/LimitsSvc/output", b"1", {"x-big": "h" * (520 * 1024)})
    assert status == 431, body
    assert "over the limit of 524288 bytes" in body["message"], body
    # What the official server accepts still passes: 90 headers, a 300 KB header.
    assert _post(env, "/LimitsSvc/output", b"1", {f"x-h{i}": "v" for i in range(90)}) == (200, "x")
    assert _post(env, "/LimitsSvc/output", b"1", {"x-big": "h" * 300_000}) == (200, "x")


def test_output_over_the_default_message_limit_fails_at_once() -> None:
    """The default limit is the official server's `message-size-limit`, 32 MiB."""
    with local_restate(limits_app) as env:
        (status, body), took = _timed(lambda: _post(env, "/LimitsSvc/output", b"%d" % (32 * 1024 * 1024)))
        assert took < PROMPT_S * 2, f"answered after {took:.1f}s"
        assert status == 500 and f"limit of {32 * 1024 * 1024} bytes" in body["message"], body
