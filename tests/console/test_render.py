"""The console's pages are pure functions: hostile values in names, keys, state and SQL results come out as
text, never as markup."""

from __future__ import annotations

import re

from pyrestate.server.console import render
from pyrestate.server.console.routes import console_origins, cross_site, sql_str

EVIL = "<script>alert('x')</script>"
EVIL_ATTR = '"><img src=x onerror=alert(1)>'


def assert_inert(html: str) -> None:
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()


def test_esc_escapes_text_and_quotes() -> None:
    assert render.esc(EVIL) == "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    assert render.esc(EVIL_ATTR).startswith("&quot;&gt;&lt;img")
    assert render.esc(None) == ""
    assert render.esc(True) == "true"


def test_state_page_escapes_keys_values_and_names() -> None:
    html = render.state_page(EVIL, EVIL_ATTR, [{"key": EVIL, "value_utf8": EVIL_ATTR, "value": "00"}])
    assert_inert(html)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert html.count("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;") == 2  # the object key and the value


def test_state_page_shows_non_utf8_values_as_hex() -> None:
    html = render.state_page("Box", "k", [{"key": "bin", "value": "ff00"}])
    assert "hex: ff00" in html


def test_invocations_page_escapes_and_links_with_encoded_ids() -> None:
    rows = [{"id": EVIL, "target": EVIL_ATTR, "status": EVIL, "last_failure": EVIL + "x" * 500}]
    html = render.invocations_page(rows, status=EVIL_ATTR, service=EVIL)
    assert_inert(html)
    # The id in the link is percent-encoded (a path segment), then attribute-escaped.
    assert 'href="/ui/invocations/%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E"' in html
    # The failure is cut to an excerpt.
    assert "x" * 200 not in html
    assert "…" in html


def test_overview_page_escapes_service_and_deployment_fields() -> None:
    html = render.overview_page(
        [{"name": EVIL, "ty": "virtual_object", "handlers": [EVIL_ATTR], "deployment_id": EVIL}],
        [{"id": EVIL, "endpoint": EVIL_ATTR, "created_at": "t", "services": [EVIL]}],
        [{"status": EVIL, "n": 3}, {"status": "completed", "n": 2}],
    )
    assert_inert(html)
    assert "Invocations (5)" in html
    assert 'href="/ui/invocations?status=completed"' in html


def test_invocation_page_escapes_journal_and_offers_post_actions() -> None:
    inv = {
        "id": "inv_1",
        "target": EVIL,
        "status": "suspended",
        "last_failure": EVIL,
        "target_service_name": "Box",
        "target_service_key": EVIL_ATTR,
        "target_service_ty": "virtual_object",
    }
    journal = [
        {"index": 0, "entry_type": "Command: Run", "name": EVIL, "completed": True},
        {"index": 1, "entry_type": "Command: Call", "invoked_id": EVIL_ATTR, "invoked_target": EVIL},
        {"index": 2, "entry_type": "Command: Sleep", "sleep_wakeup_at": "2026-01-01T00:00:00Z"},
    ]
    html = render.invocation_page(inv, journal, flash=EVIL, error=EVIL_ATTR)
    assert_inert(html)
    for action in ("cancel", "kill", "purge", "pause", "resume"):
        assert f'<form class="inline" method="post" action="/ui/invocations/inv_1/{action}">' in html
    assert "2026-01-01T00:00:00Z" in html
    assert 'href="/ui/state/Box/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"' in html


def test_sql_page_escapes_query_cells_and_error_and_bounds_rows() -> None:
    rows = [{EVIL: EVIL_ATTR, "n": i, "l": [EVIL]} for i in range(30)]
    html = render.sql_page("SELECT '</textarea><script>'", rows, error=EVIL, limit=10)
    assert_inert(html)
    assert "&lt;/textarea&gt;" in html
    assert len(re.findall("<tr>", html)) == 11  # header + 10 rows
    assert "30 row(s) (first 10 shown)" in html


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
