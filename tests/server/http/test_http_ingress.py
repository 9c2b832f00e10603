"""Ingress over real HTTP: statuses, header order and bodies of the behaviour sheet (§2)."""

from __future__ import annotations

import json

import httpx
import pytest
from http_fake_core import CALL_ID, DONE_ID, KILLED_ID, PENDING_ID, WF_RUN_ID, FakeCore

from pyrestate.protocol.ids import InvocationId
from pyrestate.server.core_api import Failure, Success

VARY = "origin, access-control-request-method, access-control-request-headers"
JSON_CT = {"content-type": "application/json"}


def names(r: httpx.Response) -> list[str]:
    return [k for k, _ in r.headers.multi_items() if k != "date"]


def assert_common(r: httpx.Response) -> None:
    assert r.headers["vary"] == VARY
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "server" not in r.headers
    assert "transfer-encoding" not in r.headers


def assert_ingress_error(r: httpx.Response, status: int, message: str) -> None:
    assert r.status_code == status
    assert names(r) == [
        "x-restate-error-source",
        "content-type",
        "vary",
        "access-control-allow-credentials",
        "content-length",
    ]
    assert r.headers["x-restate-error-source"] == "ingress"
    assert r.headers["content-type"] == "application/json"
    expected = json.dumps({"code": status, "message": message, "source": "ingress"}, separators=(",", ":"))
    assert r.content == expected.encode()
    assert_common(r)


def test_call_returns_handler_output_verbatim(ingress: httpx.Client, core: FakeCore) -> None:
    r = ingress.post("/taskWorker/runTask", headers=JSON_CT, content=b'{"id":1,"what":"hello"}')
    assert r.status_code == 200
    assert names(r) == [
        "x-restate-id",
        "content-type",
        "vary",
        "access-control-allow-credentials",
        "content-length",
    ]
    assert r.headers["x-restate-id"] == CALL_ID
    assert r.content == b'{"id":1,"what":"hello"}'
    inv = core.invocations[-1]
    assert (inv.target.service, inv.target.handler, inv.target.key) == ("taskWorker", "runTask", None)
    assert inv.idempotency_key is None and not inv.user_supplied_idempotency_key and inv.delay_ms is None


def test_get_invokes_and_put_is_405(ingress: httpx.Client) -> None:
    assert ingress.get("/taskWorker/runTask").status_code == 200
    r = ingress.put("/taskWorker/runTask", headers=JSON_CT, content=b"1")
    assert_ingress_error(r, 405, "method not allowed")


def test_headers_forwarded_to_handler(ingress: httpx.Client, core: FakeCore) -> None:
    r = ingress.post(
        "/Echo/headers?x=1", headers={"x-custom": "abc", "idempotency-key": "k1", "connection": "keep-alive"}
    )
    assert r.status_code == 200
    forwarded = core.invocations[-1].headers
    assert forwarded[0] == ("x-restate-ingress-path", "/Echo/headers?x=1")
    forwarded_names = [n for n, _ in forwarded]
    assert "x-custom" in forwarded_names and "user-agent" in forwarded_names
    for hidden in ("host", "connection", "idempotency-key"):
        assert hidden not in forwarded_names
    assert core.invocations[-1].idempotency_key == "k1"
    assert core.invocations[-1].user_supplied_idempotency_key


def test_object_key_is_percent_decoded_and_may_be_empty(ingress: httpx.Client, core: FakeCore) -> None:
    assert ingress.post("/Counter/key%20with%20space/add", headers=JSON_CT, content=b"1").status_code == 200
    assert core.invocations[-1].target.key == "key with space"
    assert ingress.post("/Counter//add", headers=JSON_CT, content=b"1").status_code == 200
    assert core.invocations[-1].target.key == ""
    assert ingress.post("/Counter/a%2Fb/add", headers=JSON_CT, content=b"1").status_code == 200
    assert core.invocations[-1].target.key == "a/b"


def test_missing_key_is_bad_path(ingress: httpx.Client) -> None:
    r = ingress.post("/Counter/add", headers=JSON_CT, content=b"1")
    assert_ingress_error(
        r, 400, "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler"
    )


def test_unknown_service_and_handler(ingress: httpx.Client) -> None:
    assert_ingress_error(
        ingress.post("/NoSuchService/foo", headers=JSON_CT, content=b"1"),
        404,
        "service 'NoSuchService' not found, make sure to register the service before calling it.",
    )
    assert_ingress_error(
        ingress.post("/taskWorker/noSuchHandler", headers=JSON_CT, content=b"1"),
        404,
        "the service 'taskWorker' exists, but the handler 'noSuchHandler' was not found, check that the "
        "handler exists in the latest registered service version.",
    )


def test_root_and_private_service(ingress: httpx.Client) -> None:
    assert_ingress_error(ingress.get("/"), 400, "bad path: /")
    assert_ingress_error(ingress.post("/Hidden/x"), 400, "the invoked service is not public")


@pytest.mark.parametrize(
    ("path", "headers", "body", "message"),
    [
        (
            "/taskWorker/runTask",
            {"content-type": "text/plain"},
            b"hello",
            "input validation error: Content-type 'text/plain' does not match 'application/json'",
        ),
        (
            "/taskWorker/runTask",
            {"content-type": "application/x-www-form-urlencoded"},
            b'{"x":1}',
            "input validation error: Content-type 'application/x-www-form-urlencoded' does not match "
            "'application/json'",
        ),
        ("/taskWorker/runTask", JSON_CT, b"", "input validation error: Empty body not allowed"),
        (
            "/Counter/c1/get",
            JSON_CT,
            b"",
            "input validation error: Expected body and content-type to be empty, but wasn't with "
            "content-type "
            "'Some(\"application/json\")'",
        ),
        ("/Echo/raw", {}, b"", "input validation error: Empty content-type"),
    ],
)
def test_input_validation(
    ingress: httpx.Client, path: str, headers: dict[str, str], body: bytes, message: str
) -> None:
    assert_ingress_error(ingress.post(path, headers=headers, content=body), 400, message)


def test_input_validation_passes(ingress: httpx.Client, core: FakeCore) -> None:
    # optional JSON input: nothing at all is accepted (the handler receives no body)
    assert ingress.post("/taskWorker/runTask").status_code == 200
    assert core.invocations[-1].body == b""
    assert ingress.post("/Counter/c1/get").status_code == 200
    # wildcard subtype
    r = ingress.post("/Echo/raw", headers={"content-type": "text/markdown; charset=utf-8"}, content=b"# hi")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain"


def test_empty_output_has_no_content_type(ingress: httpx.Client) -> None:
    r = ingress.post("/Counter/c1/reset")
    assert r.status_code == 200
    assert names(r) == ["x-restate-id", "vary", "access-control-allow-credentials", "content-length"]
    assert r.content == b""


def test_send(ingress: httpx.Client, core: FakeCore) -> None:
    r = ingress.post("/taskWorker/runTask/send", headers=JSON_CT, content=b'{"id":2}')
    assert r.status_code == 202
    assert names(r) == [
        "content-type",
        "x-restate-id",
        "vary",
        "access-control-allow-credentials",
        "content-length",
    ]
    assert r.content == f'{{"invocationId":"{PENDING_ID}","status":"Accepted"}}'.encode()
    assert r.headers["x-restate-id"] == PENDING_ID
    h = {"idempotency-key": "key-A", **JSON_CT}
    ingress.post("/taskWorker/runTask/send", headers=h, content=b"{}")
    r = ingress.post("/taskWorker/runTask/send", headers=h, content=b'{"other":1}')
    assert r.content == f'{{"invocationId":"{PENDING_ID}","status":"PreviouslyAccepted"}}'.encode()
    assert ingress.post("/Counter/c1/add/send", headers=JSON_CT, content=b"10").status_code == 202
    assert core.invocations[-1].target.key == "c1"


@pytest.mark.parametrize(
    ("delay", "ms"),
    [
        ("10s", 10_000),
        ("PT2S", 2_000),
        ("1m", 60_000),
        ("500ms", 500),
        ("60%20sec", 60_000),
        ("1h%202m", 3_720_000),
    ],
)
def test_send_with_delay(ingress: httpx.Client, core: FakeCore, delay: str, ms: int) -> None:
    r = ingress.post(f"/taskWorker/runTask/send?delay={delay}", headers=JSON_CT, content=b"1")
    assert r.status_code == 202
    assert core.invocations[-1].delay_ms == ms
    body = r.json()
    assert list(body) == ["invocationId", "executionTime", "status"]
    if ms == 10_000:
        assert body["executionTime"] == "2026-11-24T18:33:27.768000000Z"


def test_bad_delay_and_delay_on_call(ingress: httpx.Client) -> None:
    assert_ingress_error(
        ingress.post("/taskWorker/runTask/send?delay=abc", headers=JSON_CT, content=b"1"),
        400,
        'bad delay query parameter, must be a ISO8601 duration: failed to parse input in the "friendly" '
        "duration format: expected duration to start with a unit value (a decimal integer) after an optional "
        "sign, but no integer was found",
    )
    assert_ingress_error(
        ingress.post("/taskWorker/runTask?delay=1s", headers=JSON_CT, content=b"1"),
        400,
        "cannot use the delay query parameter with calls. The delay is supported only with sends",
    )


def test_idempotent_call_repeats_with_expiry(ingress: httpx.Client) -> None:
    h = {"idempotency-key": "sync-1", **JSON_CT}
    first = ingress.post("/taskWorker/runTask", headers=h, content=b'{"id":"sync"}')
    assert "idempotency-expires" not in first.headers
    second = ingress.post("/taskWorker/runTask", headers=h, content=b'{"id":"other"}')
    assert names(second) == [
        "x-restate-id",
        "idempotency-expires",
        "content-type",
        "vary",
        "access-control-allow-credentials",
        "content-length",
    ]
    assert second.headers["idempotency-expires"] == "2026-11-25T18:33:17.774+00:00"


def test_workflow_run_twice_and_idempotency_key_rejected(ingress: httpx.Client) -> None:
    assert (
        ingress.post("/Wf/w1/run/send", headers=JSON_CT, content=b'{"order":1}').json()["status"]
        == "Accepted"
    )
    assert (
        ingress.post("/Wf/w1/run/send", headers=JSON_CT, content=b"{}").json()["status"]
        == "PreviouslyAccepted"
    )
    r = ingress.post("/Wf/w1/run", headers=JSON_CT, content=b'{"order":1}')
    assert r.status_code == 409
    assert names(r) == [
        "x-restate-id",
        "x-restate-error-source",
        "content-type",
        "vary",
        "access-control-allow-credentials",
        "content-length",
    ]
    assert r.headers["x-restate-id"] == WF_RUN_ID
    assert (
        r.content == b'{"code":409,"message":"the workflow method was already invoked","source":"invocation"}'
    )
    assert_ingress_error(
        ingress.post("/Wf/w2/run", headers={"idempotency-key": "x", **JSON_CT}, content=b"{}"),
        400,
        "cannot use the idempotency key with workflow handlers. The handler invocation will already be "
        "idempotent by the workflow key itself.",
    )


def test_terminal_failure(ingress: httpx.Client) -> None:
    r = ingress.post("/Fail/terminal", headers=JSON_CT, content=b'"bad input"')
    assert r.status_code == 422
    assert r.headers["x-restate-error-source"] == "invocation"
    assert r.content == b'{"code":422,"message":"terminal failure: bad input","source":"invocation"}'


def test_output_and_attach(ingress: httpx.Client) -> None:
    r = ingress.get(f"/restate/invocation/{PENDING_ID}/output")
    assert_ingress_error(r, 470, "the invocation exists but has not completed yet")
    r = ingress.get(f"/restate/invocation/{PENDING_ID}/attach")
    assert r.status_code == 200 and "idempotency-expires" not in r.headers
    assert r.headers["content-type"] == "application/json"
    r = ingress.get(f"/restate/invocation/{DONE_ID}/output")
    assert r.status_code == 200
    assert names(r)[:2] == ["x-restate-id", "idempotency-expires"]
    assert r.headers["idempotency-expires"] == "2026-11-25T18:33:17.774+00:00"
    r = ingress.get("/restate/invocation/taskWorker/runTask/key-A/attach")
    assert r.status_code == 200 and r.content == b'{"result": "A"}'
    assert r.headers["content-type"] == "application/json"
    r = ingress.get(f"/restate/invocation/{KILLED_ID}/output")
    assert r.status_code == 409
    assert names(r) == [
        "x-restate-id",
        "idempotency-expires",
        "x-restate-error-source",
        "content-type",
        "vary",
        "access-control-allow-credentials",
        "content-length",
    ]
    assert r.content == b'{"code":409,"message":"killed","source":"invocation"}'


def test_output_errors(ingress: httpx.Client) -> None:
    assert_ingress_error(ingress.get("/restate/workflow/Wf/w0/output"), 404, "invocation not found")
    # attach to an unknown invocation: the invocation's own 404, with the id it derived (as restate-server)
    r = ingress.get("/restate/workflow/Wf/w0/attach")
    assert r.status_code == 404
    assert names(r)[:3] == ["x-restate-id", "x-restate-error-source", "content-type"]
    assert r.headers["x-restate-id"] == str(InvocationId.for_workflow_run("Wf", "w0"))
    assert r.content == b'{"code":404,"message":"not found","source":"invocation"}'
    assert_ingress_error(
        ingress.get("/restate/workflow/Wf/w1/output"), 470, "the invocation exists but has not completed yet"
    )
    assert ingress.get("/restate/workflow/Wf/w1/attach").json() == {"approved": True}
    assert_ingress_error(ingress.post(f"/restate/invocation/{DONE_ID}/attach"), 405, "method not allowed")
    assert_ingress_error(
        ingress.get("/restate/invocation/x/output"), 400, "bad invocation id 'x': bad format"
    )
    assert_ingress_error(
        ingress.get("/restate/invocation/NoSuch/h/k/output"),
        404,
        "service 'NoSuch' not found, make sure to register the service before calling it.",
    )


def test_awakeables(ingress: httpx.Client, core: FakeCore) -> None:
    aid = "sign_1cawKW1BTfV9-92Ny2L6cXTWDrzWnOIHdAAAAEQ"
    r = ingress.post(f"/restate/awakeables/{aid}/resolve", headers=JSON_CT, content=b'{"approved":true}')
    assert r.status_code == 202
    assert names(r) == ["vary", "access-control-allow-credentials", "content-length"]
    assert r.content == b"" and r.headers["content-length"] == "0"
    assert core.awakeables[-1] == (aid, Success(b'{"approved":true}'))
    r = ingress.post(
        f"/restate/a/{aid}/reject", headers={"content-type": "text/plain"}, content=b"nope, rejected"
    )
    assert r.status_code == 202
    assert core.awakeables[-1] == (aid, Failure(500, "nope, rejected"))
    assert_ingress_error(
        ingress.post("/restate/awakeables/sign_1NotARealAwakeableId/resolve", headers=JSON_CT, content=b"1"),
        400,
        "bad awakeable id 'sign_1NotARealAwakeableId': id doesn't match the expected type",
    )
    assert_ingress_error(
        ingress.post("/restate/awakeables/garbage/resolve", headers=JSON_CT, content=b"1"),
        400,
        "bad awakeable id 'garbage': bad format",
    )
    assert_ingress_error(ingress.get(f"/restate/awakeables/{aid}/resolve"), 405, "method not allowed")


def test_health(ingress: httpx.Client) -> None:
    r = ingress.get("/restate/health")
    assert r.status_code == 200
    assert names(r) == ["content-type", "vary", "access-control-allow-credentials", "content-length"]
    assert r.content == b'{"services":["taskWorker","Echo","Fail","Counter","Wf","Hidden"]}'


def test_cors_preflight_and_origin(ingress: httpx.Client) -> None:
    r = ingress.options(
        "/taskWorker/runTask",
        headers={"origin": "http://example.test", "access-control-request-method": "POST"},
    )
    assert r.status_code == 200
    assert names(r) == [
        "access-control-allow-credentials",
        "vary",
        "access-control-allow-methods",
        "access-control-allow-origin",
        "content-length",
    ]
    assert r.headers["access-control-allow-methods"] == "POST"
    assert r.headers["access-control-allow-origin"] == "http://example.test"
    assert r.content == b""
    r = ingress.post("/taskWorker/runTask", headers={"origin": "http://example.test"})
    assert r.headers["access-control-allow-origin"] == "http://example.test"


def test_body_limit(ingress: httpx.Client, core: FakeCore) -> None:
    before = len(core.invocations)
    r = ingress.post("/taskWorker/runTask", headers=JSON_CT, content=b"1" * 2048)
    assert r.status_code == 413
    assert r.json()["source"] == "ingress" and r.json()["code"] == 413
    # streamed without a length: the limit applies while reading
    r = ingress.post("/taskWorker/runTask", headers=JSON_CT, content=iter([b"1" * 600, b"1" * 600]))
    assert r.status_code == 413
    assert len(core.invocations) == before


def test_new_api_call_send_and_lookup(ingress: httpx.Client, core: FakeCore) -> None:
    assert ingress.post("/restate/call/Counter/c1/add", headers=JSON_CT, content=b"1").status_code == 200
    assert core.invocations[-1].target.key == "c1"
    assert ingress.post("/restate/send/taskWorker/runTask").status_code == 202
    r = ingress.post("/restate/output", json={"target": "invocation", "invocationId": DONE_ID})
    assert r.status_code == 200 and r.headers["x-restate-id"] == DONE_ID
    r = ingress.post(
        "/restate/lookup", json={"target": "workflow", "workflowName": "Wf", "workflowKey": "w1"}
    )
    assert r.status_code == 200 and r.json()["invocationId"].startswith("inv_1")


def test_http2_prior_knowledge(core: FakeCore) -> None:
    from http_support import served

    from pyrestate.server.ingress import IngressApp

    with served(IngressApp(core)) as url, httpx.Client(http1=False, http2=True, base_url=url) as c:
        r = c.post("/taskWorker/runTask", headers=JSON_CT, content=b"7")
        assert r.http_version == "HTTP/2"
        assert r.status_code == 200 and r.content == b"7"


def test_cors_by_default_lets_no_foreign_page_read_answers(core: FakeCore) -> None:
    from http_support import served

    from pyrestate.server.ingress import IngressApp

    evil = {"origin": "https://evil.example"}
    with served(IngressApp(core)) as url, httpx.Client(base_url=url) as c:
        r = c.post("/taskWorker/runTask", headers={**JSON_CT, **evil}, content=b"7")
        assert r.status_code == 200 and r.content == b"7"
        assert not [k for k in r.headers if k.startswith("access-control-")]
        pre = c.options("/taskWorker/runTask", headers={**evil, "access-control-request-method": "POST"})
        assert pre.status_code == 403
        assert not [k for k in pre.headers if k.startswith("access-control-")]
        assert pre.json()["message"].startswith("cross-origin requests from https://evil.example are not")


def test_cors_listed_origins_only(core: FakeCore) -> None:
    from http_support import served

    from pyrestate.server.ingress import IngressApp

    app = IngressApp(core, cors_origins=("https://app.example",))
    with served(app) as url, httpx.Client(base_url=url) as c:
        ok = c.get("/restate/health", headers={"origin": "https://app.example"})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        assert ok.headers["access-control-allow-credentials"] == "true"
        other = c.get("/restate/health", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        pre = c.options(
            "/taskWorker/runTask",
            headers={"origin": "https://app.example", "access-control-request-method": "POST"},
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-methods"] == "POST"
