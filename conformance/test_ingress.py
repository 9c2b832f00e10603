"""IngressTest and AwakeableIngressEndpointTest (runtime e2e scenarios): idempotent calls and sends,
delayed sends, attach/output by idempotency key, private services, headers, raw bytes, and completing
awakeables from outside through `/restate/awakeables/{id}/resolve|reject`."""

from __future__ import annotations

import time
import uuid

import httpx

from conformance.conftest import Env
from conformance.helpers import new_key, proxy_request, to_bytes_list
from conformance.test_sleep_and_combinators import VOCI, awakeable, start, wait_awakeable
from pyrestate.testing import eventually, json_of

BINARY = bytes(range(256))  # not valid UTF-8, not JSON: must pass through untouched


def _counter(env: Env, key: str) -> int:
    value: int = env.ingress.call_json("Counter", "get", key=key)
    return value


# --- idempotency -----------------------------------------------------------------------------------------


def test_idempotent_invoke_object_until_retention_expires(env_h2: Env) -> None:
    env, key, idem = env_h2, new_key(), new_key()
    first = env.ingress.call("ShortRetentionCounter", "add", 1, key=key, idempotency_key=idem)
    assert json_of(first) == {"oldValue": 0, "newValue": 1}
    again = env.ingress.call("ShortRetentionCounter", "add", 1, key=key, idempotency_key=idem)
    # The cached response of the same invocation, not a second execution.
    assert json_of(again) == {"oldValue": 0, "newValue": 1}
    assert again.headers["x-restate-id"] == first.headers["x-restate-id"]
    assert "idempotency-expires" in again.headers

    # Once the retention (2 s) is over the record is gone and the same key executes again.
    t0 = time.monotonic()

    def executed_again() -> None:
        r = env.ingress.call("ShortRetentionCounter", "add", 1, key=key, idempotency_key=idem)
        assert json_of(r) == {"oldValue": 1, "newValue": 2}

    eventually(executed_again, timeout=15, interval=0.25)
    assert time.monotonic() - t0 >= 0.5  # not already expired right after the first calls
    # It ran exactly once more.
    assert env.ingress.call_json("ShortRetentionCounter", "add", 0, key=key) == {"oldValue": 2, "newValue": 2}


def test_idempotent_invoke_service(env: Env) -> None:
    # The Proxy invocation itself is idempotent: its send to the Counter happens once.
    key, idem = new_key(), new_key()
    req = proxy_request("Counter", "add", 1, key)
    first = env.ingress.call_json("Proxy", "oneWayCall", req, idempotency_key=idem)
    second = env.ingress.call_json("Proxy", "oneWayCall", req, idempotency_key=idem)
    assert first == second

    def landed() -> None:
        assert _counter(env, key) == 1

    eventually(landed)
    assert json_of(env.ingress.output(first)) == {"oldValue": 0, "newValue": 1}
    assert _counter(env, key) == 1


def test_idempotent_send(env: Env) -> None:
    key, idem = new_key(), new_key()
    first = env.ingress.send("Counter", "add", 1, key=key, idempotency_key=idem)
    second = env.ingress.send("Counter", "add", 1, key=key, idempotency_key=idem)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["status"] == "Accepted"
    assert second.json() == {"invocationId": first.json()["invocationId"], "status": "PreviouslyAccepted"}
    inv = first.json()["invocationId"]
    expected = {"oldValue": 0, "newValue": 1}
    assert json_of(env.ingress.attach(inv)) == expected
    assert json_of(env.ingress.attach_by_key("Counter", "add", idem, key=key)) == expected
    assert _counter(env, key) == 1


def test_delayed_send(env_h2: Env) -> None:
    env, key = env_h2, new_key()
    t0 = time.monotonic()
    r = env.ingress.send("Counter", "add", 1, key=key, delay="1s")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "Accepted"
    assert "executionTime" in body
    if time.monotonic() - t0 < 0.7:
        assert _counter(env, key) == 0, "the delayed send ran before its delay"
        assert env.ingress.output(body["invocationId"]).status_code == 470
    assert json_of(env.ingress.attach(body["invocationId"])) == {"oldValue": 0, "newValue": 1}
    assert time.monotonic() - t0 >= 1.0


def test_send_then_attach_and_output_by_idempotency_key(env: Env) -> None:
    key, idem = new_key(), new_key()
    program = {"commands": [{"type": "awaitOne", "command": awakeable("a")}]}
    r = env.ingress.send(VOCI, "interpretCommands", program, key=key, idempotency_key=idem)
    assert r.status_code == 202, r.text
    inv = r.json()["invocationId"]
    wait_awakeable(env.ingress, key, "a")
    not_ready = env.ingress.attach_by_key(VOCI, "interpretCommands", idem, key=key, output=True)
    assert not_ready.status_code == 470, not_ready.text
    assert not_ready.json()["message"] == "the invocation exists but has not completed yet"

    json_of(env.ingress.call(VOCI, "resolveAwakeable", {"awakeableKey": "a", "value": "done"}, key=key))
    attached = env.ingress.attach_by_key(VOCI, "interpretCommands", idem, key=key)
    assert json_of(attached) == "done"
    assert attached.headers["x-restate-id"] == inv
    assert json_of(env.ingress.attach_by_key(VOCI, "interpretCommands", idem, key=key, output=True)) == "done"
    assert json_of(env.ingress.output(inv)) == "done"


# --- routing and payloads --------------------------------------------------------------------------------


def test_private_service(env_h2: Env) -> None:
    env = env_h2
    direct = env.ingress.call("PrivateService", "echo", "hi")
    assert direct.status_code == 400, direct.text
    # Other services may still call it.
    via_proxy = env.ingress.call_json("Proxy", "call", proxy_request("PrivateService", "echo", "hi"))
    assert via_proxy == to_bytes_list("hi")

    def set_public(public: bool) -> None:
        r = env.admin.client.patch("/services/PrivateService", json={"public": public})
        assert r.status_code == 200, r.text
        assert r.json()["public"] is public

    try:
        set_public(True)

        def reachable() -> None:
            assert json_of(env.ingress.call("PrivateService", "echo", "hi")) == "hi"

        eventually(reachable)
    finally:
        set_public(False)

    def private_again() -> None:
        assert env.ingress.call("PrivateService", "echo", "hi").status_code == 400

    eventually(private_again)


def test_headers_pass_through(env: Env) -> None:
    headers = {"x-my-custom-header": "my-value", "x-another": "value 2"}
    echoed = env.ingress.call_json("TestUtilsService", "echoHeaders", headers=headers)
    assert {k: echoed.get(k) for k in headers} == headers


def test_raw_handler(env: Env) -> None:
    r = env.ingress.call("TestUtilsService", "rawEcho", raw=BINARY)
    assert r.status_code == 200, r.text
    assert r.content == BINARY
    assert r.headers["content-type"] == "application/octet-stream"


# --- AwakeableIngressEndpoint ----------------------------------------------------------------------------


def _raw_awakeable(env: Env) -> tuple[str, str]:
    """Starts RawAwakeable/awaitRaw on a fresh key; returns (invocation id, awakeable id)."""
    key = new_key()
    r = env.ingress.send("RawAwakeable", "awaitRaw", key=key)
    assert r.status_code == 202, r.text

    def registered() -> str:
        awakeable_id = env.ingress.call_json("RawAwakeable", "awakeableId", key=key)
        assert isinstance(awakeable_id, str) and awakeable_id.startswith("sign_1")
        return awakeable_id

    return r.json()["invocationId"], eventually(registered)


def _post(env: Env, awakeable_id: str, verb: str, content: bytes, content_type: str) -> httpx.Response:
    return env.ingress.client.post(
        f"/restate/awakeables/{awakeable_id}/{verb}", content=content, headers={"content-type": content_type}
    )


def test_awakeable_resolve_raw_through_ingress(env: Env) -> None:
    inv, awakeable_id = _raw_awakeable(env)
    assert _post(env, awakeable_id, "resolve", BINARY, "application/octet-stream").status_code == 202
    r = env.ingress.attach(inv)
    assert r.status_code == 200, r.text
    assert r.content == BINARY


def test_awakeable_resolve_json_through_ingress(env: Env) -> None:
    key = new_key()
    inv = start(env.ingress, key, {"type": "awaitOne", "command": awakeable("j")})
    awakeable_id = _voci_awakeable_id(env, key, "j")
    r = env.ingress.resolve_awakeable(awakeable_id, "from outside")
    assert (r.status_code, r.content) == (202, b"")
    assert json_of(env.ingress.attach(inv)) == "from outside"
    # Completing it again is accepted and changes nothing.
    assert env.ingress.resolve_awakeable(awakeable_id, "too late").status_code == 202
    assert json_of(env.ingress.output(inv)) == "from outside"


def test_awakeable_reject_through_ingress(env: Env) -> None:
    inv, awakeable_id = _raw_awakeable(env)
    assert env.ingress.reject_awakeable(awakeable_id, "nope, rejected").status_code == 202
    r = env.ingress.attach(inv)
    assert (r.status_code, r.json()["message"]) == (500, "nope, rejected")


def test_awakeable_endpoint_errors(env_h2: Env) -> None:
    env = env_h2
    bad = env.ingress.resolve_awakeable("garbage", "x")
    assert bad.status_code == 400
    assert bad.json()["message"] == "bad awakeable id 'garbage': bad format"
    # A well-formed id of another kind (an invocation id) is not an awakeable id.
    wrong_kind = env.ingress.resolve_awakeable("inv_1" + "0" * 33, "x")
    assert wrong_kind.status_code == 400
    _, awakeable_id = _raw_awakeable(env)
    assert env.ingress.client.get(f"/restate/awakeables/{awakeable_id}/resolve").status_code == 405
    # Leave nothing blocked behind.
    assert _post(env, awakeable_id, "resolve", b"", "application/octet-stream").status_code == 202


def _voci_awakeable_id(env: Env, key: str, awk: str) -> str:
    wait_awakeable(env.ingress, key, awk)
    # The interpreter keeps the id in its state; read it as an external system would receive it.
    rows = env.admin.query(
        f"SELECT value_utf8 FROM state WHERE service_name = '{VOCI}' AND service_key = '{key}' "
        f"AND key = 'awk-{awk}'"
    )
    assert len(rows) == 1, rows
    value = rows[0]["value_utf8"]
    awakeable_id: str = value.strip('"')
    assert awakeable_id.startswith("sign_1")
    return awakeable_id


def test_idempotency_keys_are_scoped_per_handler(env_h2: Env) -> None:
    # The same key on another target is another invocation.
    env, idem = env_h2, str(uuid.uuid4())
    a = env.ingress.call("TestUtilsService", "echo", "a", idempotency_key=idem)
    b = env.ingress.call("TestUtilsService", "uppercaseEcho", "b", idempotency_key=idem)
    assert (json_of(a), json_of(b)) == ("a", "B")
    assert a.headers["x-restate-id"] != b.headers["x-restate-id"]
