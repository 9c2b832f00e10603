"""The console's pages are pure functions: hostile values in names, keys, state, errors and SQL results come
out as text, never as markup."""

from __future__ import annotations

import json
import re

from pyrestate.server.console import invocation_pages, markup, service_pages, sql_pages
from pyrestate.server.console.base import sql_str
from pyrestate.server.console.http import console_origins, cross_site
from pyrestate.server.console.service_handlers import encode_value, state_version

EVIL = "<script>alert('x')</script>"
EVIL_ATTR = '"><img src=x onerror=alert(1)>'
OWN_SCRIPT = '<script src="/ui/static/console.js" defer></script>'


def assert_inert(html: str) -> None:
    assert html.count(OWN_SCRIPT) == 1
    rest = html.replace(OWN_SCRIPT, "").lower()
    assert "<script" not in rest
    assert "<img" not in rest
    assert " onerror=" not in rest.replace("onerror=alert", "")  # only ever inside escaped text


def test_esc_escapes_text_and_quotes() -> None:
    assert markup.esc(EVIL) == "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    assert markup.esc(EVIL_ATTR).startswith("&quot;&gt;&lt;img")
    assert markup.esc(None) == ""
    assert markup.esc(True) == "true"


def test_state_page_escapes_keys_values_and_names() -> None:
    value = json.dumps(EVIL_ATTR).encode().hex()
    html = service_pages.state_page(EVIL, EVIL_ATTR, [{"key": EVIL, "value": value}], version=EVIL_ATTR)
    assert_inert(html)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html


def test_state_page_decodes_json_text_and_binary() -> None:
    rows = [
        {"key": "j", "value": b'{"a":[1,2]}'.hex()},
        {"key": "t", "value": b"plain words".hex()},
        {"key": "b", "value": "ff00"},
    ]
    html = service_pages.state_page("Box", "k", rows, version="v1")
    assert "<pre>{\n  &quot;a&quot;: [\n    1,\n    2\n  ]\n}</pre>" in html
    assert "text:</span> <pre>plain words</pre>" in html
    assert "base64:</span> <pre>/wA=</pre>" in html
    assert html.count('name="version" value="v1"') == 7  # 3 edit forms, 3 delete forms, the add form


def test_workflow_promises_are_listed() -> None:
    promises = [{"key": EVIL, "completed": True, "completion_success_value": b'"yes"'.hex()}]
    html = service_pages.state_page("Signup", "w", [], promises=promises)
    assert_inert(html)
    assert "<h2>Promises</h2>" in html and "&quot;yes&quot;" in html


def test_invocations_page_escapes_links_and_pages() -> None:
    rows = [{"id": EVIL, "target": EVIL_ATTR, "status": EVIL, "last_failure": EVIL + "x" * 500}]
    filters = {"service": EVIL, "status": "running", "key": EVIL_ATTR}
    counts = [{"status": "running", "n": 3}, {"status": EVIL, "n": 1}]
    html = invocation_pages.invocations_page(
        rows, filters, counts, next_cursor="2026-01-01T00:00:00Z|inv_1", paged=True
    )
    assert_inert(html)
    # The id in the link is percent-encoded (a path segment), then attribute-escaped.
    assert 'href="/ui/invocations/%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E"' in html
    assert "x" * 200 not in html and "…" in html  # the failure is cut to an excerpt
    assert '<option value="running" selected>' in html
    assert "4 matching" in html
    assert "before=2026-01-01T00%3A00%3A00Z%7Cinv_1" in html and "« Newest" in html
    assert '<span class="st st-running">running</span> 3' in html


def test_overview_page_counts_failing_and_throughput() -> None:
    html = invocation_pages.overview_page(
        [{"status": "backing-off", "n": 2}, {"status": "completed", "n": 5}],
        [{"id": EVIL, "target": EVIL_ATTR, "retry_count": 4, "last_failure": EVIL}],
        [],
        [],
        [{"minute": "2026-01-01T00:00:00Z", "created": 3, "completed": 1}],
        services=2,
        deployments=1,
    )
    assert_inert(html)
    assert "7 invocations stored" in html
    assert 'href="/ui/invocations?status=backing-off"' in html
    assert '<meter min="0" max="3" value="3"></meter>' in html


def test_invocation_page_timeline_values_and_actions() -> None:
    inv = {
        "id": "inv_1",
        "target": EVIL,
        "status": "completed",
        "completion_result": "success",
        "created_at": "2026-01-01T00:00:00.000Z",
        "invoked_by_id": "inv_caller",
        "invoked_by_target": "Caller/fan",
        "target_service_name": "Box",
        "target_service_key": EVIL_ATTR,
        "target_service_ty": "virtual_object",
        "retry_count": 2,
        "last_failure": EVIL + "\nTraceback: line 1",
    }
    call = {"Command": {"Call": {"parameter": [49], "result_completion_id": 2}}}
    journal = [
        {
            "index": 0,
            "entry_type": "Command: Input",
            "appended_at": "2026-01-01T00:00:00.000Z",
            "entry_json": json.dumps({"Command": {"Input": {"payload": list(b'{"x":1}')}}}),
        },
        {
            "index": 1,
            "entry_type": "Command: Call",
            "invoked_id": EVIL_ATTR,
            "invoked_target": "Box/k/put",
            "appended_at": "2026-01-01T00:00:00.100Z",
            "entry_json": json.dumps(call),
        },
        {
            "index": 2,
            "entry_type": "Notification: Call",
            "appended_at": "2026-01-01T00:00:01.600Z",
            "entry_json": json.dumps({"Notification": {"Completion": {"Call": {"completion_id": 2}}}}),
        },
        {
            "index": 3,
            "entry_type": "Command: Sleep",
            "sleep_wakeup_at": "2026-01-01T01:00:00Z",
            "completed": False,
            "entry_json": json.dumps({"Command": {"Sleep": {"completion_id": 3}}}),
            "appended_at": "2026-01-01T00:00:02.000Z",
        },
        {
            "index": 4,
            "entry_type": "Command: Output",
            "appended_at": "2026-01-01T00:00:02.000Z",
            "entry_json": json.dumps({"Command": {"Output": {"result": {"Success": list(b"\xff")}}}}),
        },
    ]
    html = invocation_pages.invocation_page(inv, journal, flash=EVIL, error=EVIL_ATTR)
    assert_inert(html)
    # Completed: only purge applies, and it asks first.
    assert 'action="/ui/invocations/inv_1/purge" data-confirm=' in html
    for action in ("cancel", "kill", "pause", "resume", "restart"):
        assert f"/inv_1/{action}" not in html
    assert "<pre>{\n  &quot;x&quot;: 1\n}</pre>" in html  # the input, pretty-printed
    assert "<td>1.50 s</td>" in html  # the call took until its completion
    assert "+100 ms" in html
    assert "wakes up at <time>2026-01-01T01:00:00Z</time>" in html and "waiting…" in html
    assert "<h2>Output</h2>" in html and "base64:</span> <pre>/w==</pre>" in html
    assert 'href="/ui/invocations/inv_caller"' in html  # the caller, linked back
    assert 'href="/ui/services/Box"' in html
    assert "Traceback: line 1" in html and "<h2>Retries</h2>" in html
    assert 'href="/ui/state/Box/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"' in html


def test_actions_follow_the_status() -> None:
    assert invocation_pages.actions_for("running") == ("pause", "cancel", "kill")
    assert invocation_pages.actions_for("paused") == ("resume", "cancel", "kill")
    assert invocation_pages.actions_for("completed") == ("purge",)
    assert invocation_pages.actions_for("nonsense") == ()


def test_service_and_deployment_pages_escape() -> None:
    html = service_pages.service_page(
        {"name": EVIL, "ty": "VirtualObject", "revision": 1, "public": True, "documentation": EVIL},
        [{"name": EVIL_ATTR, "ty": "exclusive", "input_json_schema": {"title": EVIL}}],
        [{"id": EVIL, "endpoint": EVIL_ATTR, "latest": True, "active": 1, "total": 2}],
        result=service_pages.invoke_result("inv_1", sent=False, failure=EVIL),
        form={"body": EVIL, "key": EVIL_ATTR},
    )
    assert_inert(html)
    assert 'name="key"' in html  # keyed services need a key
    html = service_pages.deployments_page(
        [{"id": EVIL, "endpoint": EVIL_ATTR, "services": [EVIL], "active": 0, "total": 0}], uri=EVIL_ATTR
    )
    assert_inert(html)
    assert "data-confirm=" in html


def test_sql_page_escapes_links_ids_and_bounds_rows() -> None:
    rows = [{EVIL: EVIL_ATTR, "n": i, "l": [EVIL], "id": f"inv_{i}"} for i in range(30)]
    tables = {"sys_invocation": [("id", "LargeUtf8"), (EVIL, EVIL_ATTR)]}
    html = sql_pages.sql_page("SELECT '</textarea><script>'", rows, tables=tables, error=EVIL, limit=10)
    assert_inert(html)
    assert "&lt;/textarea&gt;" in html
    assert len(re.findall("<tr>", html)) == 11  # header + 10 rows
    assert "30 row(s) (first 10 shown)" in html
    assert 'href="/ui/invocations/inv_3"' in html
    assert "format=csv" in html and "/ui/sql?q=SELECT" in html


def test_state_version_and_value_encodings() -> None:
    a = state_version([("a", b"1"), ("b", b"2")])
    assert a == state_version([("b", b"2"), ("a", b"1")])
    assert a != state_version([("a", b"12")]) != state_version([("a", b"1"), ("b", b"3")])
    assert encode_value('{"x": 1}', "json") == b'{"x": 1}'
    assert encode_value("/w==", "base64") == b"\xff"
    assert encode_value("hi", "text") == b"hi"
    for text, enc in (("{nope", "json"), ("!!", "base64"), ("x", "rot13")):
        try:
            encode_value(text, enc)
        except ValueError:
            continue
        raise AssertionError((text, enc))


def test_sql_literal_and_cross_site_check() -> None:
    assert sql_str("a'b") == "'a''b'"
    origins = console_origins("127.0.0.1:9070")
    host = [("host", "127.0.0.1:9070")]
    assert not cross_site(host, origins)
    assert not cross_site([*host, ("origin", "http://127.0.0.1:9070")], origins)
    assert not cross_site([*host, ("origin", "http://localhost:9070")], origins)
    assert cross_site([*host, ("origin", "http://evil.example")], origins)
    assert cross_site([*host, ("sec-fetch-site", "cross-site")], origins)
    assert not cross_site([*host, ("sec-fetch-site", "same-origin")], origins)
    # DNS rebinding: the page's Host matches its Origin, neither is the console's address.
    rebound = [("host", "rebind.example:9070"), ("origin", "http://rebind.example:9070")]
    assert cross_site(rebound, origins)
    behind_proxy = console_origins("0.0.0.0:9070", "https://restate.example.com/")
    assert not cross_site([("origin", "https://restate.example.com")], behind_proxy)
    assert not cross_site([("origin", "http://localhost:9070")], behind_proxy)
    assert cross_site([("origin", "http://restate.example.com")], behind_proxy)
