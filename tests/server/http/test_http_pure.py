"""Pure parts of the HTTP layers: paths, durations, content types, ids, error mapping, config, manifest."""

from __future__ import annotations

import pytest

from pyrestate.server import config as cfg
from pyrestate.server import core_api
from pyrestate.server.admin.manifest import ManifestInvalid, parse_manifest
from pyrestate.server.core_api import (
    ById,
    ByIdempotencyKey,
    ByWorkflow,
    HandlerSchema,
    HandlerType,
    ServiceType,
)
from pyrestate.server.durations import (
    DurationError,
    format_friendly_ms,
    parse_duration_ms,
    rfc3339_millis,
    rfc3339_nanos,
)
from pyrestate.server.ingress import errors
from pyrestate.server.ingress.paths import (
    AwakeableRoute,
    HealthRoute,
    LookupRoute,
    ServiceRoute,
    TargetInBodyRoute,
    delay_from_query,
    parse_path,
)
from pyrestate.server.resource_ids import (
    IdDecodeError,
    check_awakeable_id,
    check_deployment_id,
    check_invocation_id,
)
from pyrestate.server.validation import (
    ContentTypePattern,
    InputValidationError,
    input_description,
    output_content_type,
    output_description,
    validate_input,
)

TYPES = {"svc": ServiceType.SERVICE, "Obj": ServiceType.VIRTUAL_OBJECT, "Wf": ServiceType.WORKFLOW}


def route(path: str) -> object:
    return parse_path(path, TYPES.get)


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/svc/h", ServiceRoute("svc", "h", None, False)),
        ("/svc/h/send", ServiceRoute("svc", "h", None, True)),
        ("/Obj/k/h", ServiceRoute("Obj", "h", "k", False)),
        ("/Obj/k%20x/h/send", ServiceRoute("Obj", "h", "k x", True)),
        ("/Obj//h", ServiceRoute("Obj", "h", "", False)),
        ("/Obj/%C3%A9/h", ServiceRoute("Obj", "h", "é", False)),
        ("/Wf/w1/run", ServiceRoute("Wf", "run", "w1", False)),
        ("/restate/call/Obj/k/h", ServiceRoute("Obj", "h", "k", False)),
        ("/restate/send/svc/h", ServiceRoute("svc", "h", None, True)),
        ("/restate/health", HealthRoute()),
        ("/restate/invocation/inv_1x/attach", LookupRoute("attach", ById("inv_1x"))),
        (
            "/restate/invocation/svc/h/key-A/output",
            LookupRoute("output", ByIdempotencyKey("svc", "h", "key-A")),
        ),
        (
            "/restate/invocation/Obj/k%2F1/h/ik/attach",
            LookupRoute("attach", ByIdempotencyKey("Obj", "h", "ik", key="k/1")),
        ),
        ("/restate/workflow/Wf/w%201/output", LookupRoute("output", ByWorkflow("Wf", "w 1"))),
        ("/restate/attach/inv_1x", LookupRoute("attach", ById("inv_1x"))),
        ("/restate/output", TargetInBodyRoute("output")),
        ("/restate/awakeables/sign_1a/resolve", AwakeableRoute("resolve", "sign_1a")),
        ("/restate/a/sign_1a/reject", AwakeableRoute("reject", "sign_1a")),
    ],
)
def test_parse_path(path: str, expected: object) -> None:
    assert route(path) == expected


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/", 400, "bad path: /"),
        ("/svc", 400, "bad path: /svc"),
        ("/a/b/c/d/e/f/g/h", 400, "bad path: /a/b/c/d/e/f/g/h"),
        ("/Obj/h", 400, "bad path, expected either /:service-name/:handler"),
        ("/svc/h/other", 400, "bad path, expected either /:service-name/:handler"),
        ("/svc/h/send/x", 400, "bad path, expected either /:service-name/:handler"),
        ("/Nope/h", 404, "service 'Nope' not found"),
        ("/restate/nope", 404, "not found"),
        ("/restate/invocation/x", 400, "bad path, expected either /restate/invocation/"),
        ("/restate/invocation/x/nope", 404, "not found"),
        ("/restate/workflow/Wf/k", 400, "bad path, expected either /restate/workflow/"),
        ("/restate/awakeables/x", 400, "bad path, expected either /restate/awakeables/"),
        ("/restate/awakeables/x/accept", 404, "not found"),
        ("/Obj/%FF/h", 400, "bad path, cannot decode key"),
        ("/openapi/x", 404, "not found"),
    ],
)
def test_parse_path_errors(path: str, status: int, fragment: str) -> None:
    with pytest.raises(errors.IngressError) as e:
        route(path)
    assert e.value.status == status
    assert fragment in e.value.message


def test_delay_query() -> None:
    assert delay_from_query("") is None
    assert delay_from_query("x=1&delay=10s") == 10_000
    with pytest.raises(errors.IngressError, match="bad delay query parameter"):
        delay_from_query("delay=-5s")


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("10s", 10_000),
        ("1m", 60_000),
        ("500ms", 500),
        ("60 sec", 60_000),
        ("60sec", 60_000),
        ("1h 2m", 3_720_000),
        ("1h, 2m", 3_720_000),
        ("2 hours 5 minutes", 7_500_000),
        ("1 day", 86_400_000),
        ("1.5s", 1_500),
        ("1w", 604_800_000),
        ("PT2S", 2_000),
        ("pt1m30s", 90_000),
        ("P1DT2H", 93_600_000),
        ("PT0.25S", 250),
        ("P1W", 604_800_000),
        ("0s", 0),
        ("1500us", 1),
    ],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["abc", "", "10", "5 parsecs", "PT", "P", "1y", "3 months", "P1M", "PTS"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration_ms(text)


def test_format_durations_and_times() -> None:
    assert [format_friendly_ms(v) for v in (0, 500, 2_000, 60_000, 600_000, 86_400_000, 90_500)] == [
        "0s",
        "500ms",
        "2s",
        "1m",
        "10m",
        "1d",
        "1m 30s 500ms",
    ]
    assert rfc3339_millis(1_795_631_597_774) == "2026-11-25T18:33:17.774+00:00"
    assert rfc3339_nanos(1_795_545_197_768) == "2026-11-24T18:33:17.768000000Z"
    assert rfc3339_nanos(1_795_545_197_000) == "2026-11-24T18:33:17.000000000Z"


# ---------------------------------------------------------------- content types and input rules


@pytest.mark.parametrize(
    ("pattern", "content_type", "ok"),
    [
        ("*/*", "anything", True),
        ("application/json", "application/json", True),
        ("application/json", "application/json; charset=utf-8", True),
        ("application/json", "text/plain", False),
        ("text/*", "text/plain", True),
        ("text/*", "text/html;q=1", True),
        ("text/*", "application/text", False),
        ("application/json", "application", False),
        ("application/json", "application/jsonx", False),
    ],
)
def test_content_type_matching(pattern: str, content_type: str, ok: bool) -> None:
    assert ContentTypePattern.parse(pattern).matches(content_type) is ok


def test_content_type_pattern_rejects_star_subtype() -> None:
    with pytest.raises(ValueError, match="not supported"):
        ContentTypePattern.parse("*/json")


def _handler(**kw: object) -> HandlerSchema:
    return HandlerSchema(name="h", ty=None, **kw)  # type: ignore[arg-type]


def test_input_rules() -> None:
    none = _handler(input_content_type=None)
    validate_input(none, None, b"")
    with pytest.raises(InputValidationError, match="content-type 'None'"):
        validate_input(none, None, b"x")
    optional_json = _handler(input_content_type="application/json", input_json_schema=True)
    validate_input(optional_json, None, b"")
    validate_input(optional_json, "application/json", b"1")
    with pytest.raises(InputValidationError, match=r"^Empty content-type$"):
        validate_input(optional_json, None, b"1")
    with pytest.raises(InputValidationError, match=r"^Empty body not allowed$"):
        validate_input(optional_json, "application/json", b"")
    required_any = _handler(input_required=True)
    validate_input(required_any, "x/y", b"")  # no JSON schema: an empty body is fine
    with pytest.raises(InputValidationError, match=r"^Empty content-type$"):
        validate_input(required_any, None, b"")


def test_descriptions_and_output_content_type() -> None:
    h = _handler(
        input_content_type="application/json",
        input_json_schema={"type": "integer"},
        output_json_schema={"title": "Result"},
    )
    assert (input_description(h), output_description(h)) == ("JSON integer", "JSON 'Result'")
    h = _handler(input_content_type="application/json", input_json_schema=True, output_json_schema=True)
    assert (input_description(h), output_description(h)) == ("application/json", "application/json")
    h = _handler(input_content_type=None, output_content_type=None)
    assert (input_description(h), output_description(h)) == ("none", "none")
    h = _handler(output_content_type="text/plain", output_set_content_type_if_empty=True)
    assert output_description(h) == "optional text/plain"
    assert output_content_type(h, b"") == "text/plain"
    assert output_content_type(_handler(), b"") is None
    assert output_content_type(_handler(), b"1") == "application/json"


# ---------------------------------------------------------------- ids and error mapping


@pytest.mark.parametrize(
    ("check", "text", "reason"),
    [
        (check_invocation_id, "x", "bad format"),
        (check_invocation_id, "", "bad length"),
        (check_invocation_id, "inv_2abc", "unrecognized codec version"),
        (check_invocation_id, "foo_1abc", "unrecognized resource type: foo"),
        (check_invocation_id, "dp_116zPhmWzWGcGcAu2eXpLYl", "id doesn't match the expected type"),
        (check_invocation_id, "inv_1abc", "bad length"),
        (check_invocation_id, "inv_1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "base62 decode error"),
        (check_invocation_id, "inv_1gaIzkHkIJGM5BB20OJ5elvNItcghaaKy!", "base62 decode error"),
        (check_deployment_id, "dp_nonexistent", "unrecognized codec version"),
        (check_awakeable_id, "sign_1NotARealAwakeableId", "id doesn't match the expected type"),
        (check_awakeable_id, "garbage", "bad format"),
    ],
)
def test_id_reasons(check: object, text: str, reason: str) -> None:
    with pytest.raises(IdDecodeError) as e:
        check(text)  # type: ignore[operator]
    assert e.value.reason == reason


def test_valid_ids() -> None:
    check_invocation_id("inv_1gaIzkHkIJGM5BB20OJ5elvNItcghaaKyg")
    check_deployment_id("dp_116zPhmWzWGcGcAu2eXpLYl")
    check_awakeable_id("sign_1cawKW1BTfV9-92Ny2L6cXTWDrzWnOIHdAAAAEQ")


@pytest.mark.parametrize(
    ("exc", "lookup", "status", "message"),
    [
        (core_api.NotReady(), True, 470, "the invocation exists but has not completed yet"),
        (core_api.NotFound(), True, 404, "invocation not found"),
        (core_api.NotFound("gone"), True, 404, "invocation not found"),
        (core_api.NotFound("service gone"), False, 404, "service gone"),
        (core_api.BadRequest("nope"), False, 400, "nope"),
        (core_api.Conflict("busy"), False, 409, "busy"),
        (core_api.Unavailable(), False, 503, "unavailable"),
    ],
)
def test_error_mapping(exc: Exception, lookup: bool, status: int, message: str) -> None:
    e = errors.from_core(exc, lookup=lookup)
    assert (e.status, e.message) == (status, message)


def test_unexpected_errors_are_500_and_failure_codes() -> None:
    e = errors.from_core(RuntimeError("boom"))
    assert e.status == 500 and e.message.startswith("internal routing error: boom")
    assert [errors.failure_status(c) for c in (409, 422, 500, 470, 0, 1000, 65535)] == [
        409,
        422,
        500,
        470,
        500,
        500,
        500,
    ]


# ---------------------------------------------------------------- config and manifest


def test_limits_config() -> None:
    default = cfg.ServerConfig()
    assert (
        default.message_size_limit,
        default.key_size_limit,
        default.max_request_headers,
        default.max_request_headers_bytes,
    ) == (32 * 1024 * 1024, 16 * 1024, 100, 512 * 1024)
    c = cfg.from_env(
        {
            "PYRESTATE_MESSAGE_SIZE_LIMIT": "8MiB",
            "PYRESTATE_KEY_SIZE_LIMIT": "1KiB",
            "PYRESTATE_MAX_REQUEST_HEADERS": "50",
            "PYRESTATE_MAX_REQUEST_HEADERS_SIZE": "64KiB",
        }
    )
    assert (c.message_size_limit, c.key_size_limit, c.max_request_headers, c.max_request_headers_bytes) == (
        8 * 1024 * 1024,
        1024,
        50,
        64 * 1024,
    )
    with pytest.raises(cfg.ConfigError, match="--key-size-limit"):
        cfg.from_values({"key_size_limit": "0"})


def test_config_from_env_and_values() -> None:
    c = cfg.from_env(
        {
            "PYRESTATE_INACTIVITY_TIMEOUT": "2s",
            "PYRESTATE_RETRY_ON_MAX_ATTEMPTS": "kill",
            "PYRESTATE_DISABLE_EAGER_STATE": "true",
            "PYRESTATE_PARTITIONS": "4",
            "PYRESTATE_MAX_REQUEST_BODY": "1MiB",
        }
    )
    assert (c.inactivity_timeout_ms, c.retry_on_max_attempts, c.disable_eager_state, c.partitions) == (
        2000,
        "KILL",
        True,
        4,
    )
    assert c.max_request_body_bytes == 1024 * 1024
    assert cfg.ServerConfig().ingress_endpoint == "http://127.0.0.1:8080/"
    assert cfg.parse_bind("[::1]:9070") == ("::1", 9070)
    with pytest.raises(cfg.ConfigError, match="--partitions"):
        cfg.from_values({"partitions": "0"})
    with pytest.raises(cfg.ConfigError, match="--ingress-bind"):
        cfg.from_values({"ingress_bind": "nope"})


def _manifest(**over: object) -> dict[str, object]:
    m: dict[str, object] = {
        "protocolMode": "BIDI_STREAM",
        "minProtocolVersion": 5,
        "maxProtocolVersion": 7,
        "services": [
            {
                "name": "Obj",
                "ty": "VIRTUAL_OBJECT",
                "inactivityTimeout": 2000,
                "handlers": [{"name": "a"}, {"name": "b", "ty": "SHARED", "input": {}, "output": {}}],
            },
            {"name": "Wf", "ty": "WORKFLOW", "handlers": [{"name": "run", "ingressPrivate": True}]},
        ],
    }
    m.update(over)
    return m


def test_manifest_defaults() -> None:
    parsed = parse_manifest(_manifest())
    obj, wf = parsed.services
    a, b = obj.handlers["a"], obj.handlers["b"]
    assert (
        a.ty is HandlerType.EXCLUSIVE
        and a.input_content_type == "*/*"
        and a.output_content_type == "application/json"
    )
    assert b.ty is HandlerType.SHARED and b.input_content_type is None and b.output_content_type is None
    assert obj.inactivity_timeout_ms == 2000
    assert wf.handlers["run"].ty is HandlerType.WORKFLOW and not wf.handlers["run"].public
    assert parse_manifest(_manifest(protocolMode="REQUEST_RESPONSE")).protocol_mode == "REQUEST_RESPONSE"


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"minProtocolVersion": 1, "maxProtocolVersion": 4}, "META0012"),
        ({"minProtocolVersion": 6, "maxProtocolVersion": 5}, "greater than"),
        ({"protocolMode": None}, "missing required field 'protocolMode'"),
        (
            {"services": [{"name": "W", "ty": "WORKFLOW", "handlers": [{"name": "a"}, {"name": "b"}]}]},
            "exactly one workflow handler",
        ),
        (
            {
                "services": [
                    {"name": "S", "ty": "SERVICE", "handlers": [{"name": "h", "input": {"contentType": "x"}}]}
                ]
            },
            "must contain one /",
        ),
        ({"services": [{"name": "1bad", "ty": "SERVICE", "handlers": []}]}, "invalid service name"),
        (
            {"services": [{"name": "S", "ty": "SERVICE", "handlers": [{"name": "h", "ty": "SHARED"}]}]},
            "must not set a type",
        ),
        ({"services": [{"name": "S", "ty": "THING", "handlers": []}]}, "is not one of"),
        (
            {"services": [{"name": "S", "ty": "SERVICE", "handlers": [{"name": "h"}, {"name": "h"}]}]},
            "duplicate handler",
        ),
        (
            {
                "services": [
                    {"name": "S", "ty": "SERVICE", "handlers": [{"name": "h", "inactivityTimeout": -1}]}
                ]
            },
            "must be >= 0",
        ),
    ],
)
def test_manifest_rejects(over: dict[str, object], fragment: str) -> None:
    with pytest.raises(ManifestInvalid, match=fragment):
        parse_manifest(_manifest(**over))


def test_one_config_with_the_official_defaults() -> None:
    defaults = cfg.ServerConfig()
    assert defaults.partitions == 24  # the official server's default
    policy = defaults.retry_policy
    assert (policy.initial_interval_ms, policy.max_attempts, policy.on_max_attempts) == (500, 70, "pause")
