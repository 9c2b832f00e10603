"""The console over real HTTP against a real `pyrestate server` with an official-SDK deployment."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import httpx
from console_support import ConsoleStack


def send(stack: ConsoleStack, path: str, body: object = None) -> str:
    r = stack.ingress.post(f"/{path}/send", json=body)
    assert r.status_code == 202, r.text
    inv_id: str = r.json()["invocationId"]
    return inv_id


def query(stack: ConsoleStack, sql: str) -> list[dict[str, object]]:
    r = stack.admin.post("/query", json={"query": sql}, headers={"accept": "application/json"})
    assert r.status_code == 200, r.text
    rows: list[dict[str, object]] = r.json()["rows"]
    return rows


def wait_status(stack: ConsoleStack, inv_id: str, want: set[str], timeout: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        rows = query(stack, f"SELECT status, completion_failure FROM sys_invocation WHERE id = '{inv_id}'")
        if rows and rows[0].get("status") in want:
            return rows[0]
        assert time.monotonic() < deadline, f"{inv_id}: {rows}"
        time.sleep(0.1)


def waiting_invocation(stack: ConsoleStack, key: str) -> str:
    inv_id = send(stack, f"Waiter/{key}/wait")
    deadline = time.monotonic() + 20
    # Wait until the run entry is journaled, so the handler is parked on its awakeable.
    while not query(stack, f"SELECT index FROM sys_journal WHERE id = '{inv_id}' AND name = 'noted'"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return inv_id


def test_overview_services_and_headers(console_stack: ConsoleStack) -> None:
    r = console_stack.ingress.post("/Box/k1/put", json="v")
    assert r.status_code == 200, r.text
    for path in ("/ui", "/ui/"):
        page = console_stack.admin.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        csp = page.headers["content-security-policy"]
        # Scripts and styles only from the console's own files: no inline script can run.
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp and page.headers["x-frame-options"] == "DENY"
        assert re.findall(r"<script(?![^>]*\bsrc=)", page.text) == []
        assert 'href="/ui/invocations?status=completed"' in page.text
    services = console_stack.admin.get("/ui/services").text
    assert "Box" in services and "Waiter" in services and "VirtualObject" in services
    assert "put" in services and "wait" in services
    assert console_stack.deployment_id in services
    js = console_stack.admin.get("/ui/static/console.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert console_stack.admin.get("/ui/static/console.css").status_code == 200
    assert console_stack.admin.get("/ui/static/other.js").status_code == 404


def test_invocations_list_filters_and_links(console_stack: ConsoleStack) -> None:
    r = console_stack.ingress.post("/Box/k2/put", json="w")
    assert r.status_code == 200
    inv_id = query(console_stack, "SELECT id FROM sys_invocation WHERE target = 'Box/k2/put'")[0]["id"]
    html = console_stack.admin.get("/ui/invocations", params={"service": "Box", "status": "completed"}).text
    assert f'href="/ui/invocations/{inv_id}"' in html
    assert "Box/k2/put" in html
    assert '<span class="st st-success">completed (success)</span>' in html
    other = console_stack.admin.get("/ui/invocations", params={"service": "Waiter"}).text
    assert str(inv_id) not in other


def test_state_page_escapes_hostile_keys_and_shows_binary_as_hex(console_stack: ConsoleStack) -> None:
    r = console_stack.ingress.post("/Box/evil/put", json="<img src=x onerror=alert(1)>")
    assert r.status_code == 200
    r = console_stack.admin.post(
        "/services/Box/state", json={"object_key": "bin", "new_state": {"raw": [255, 0, 1]}}
    )
    assert r.status_code == 202, r.text
    page = console_stack.admin.get("/ui/state/Box/evil")
    assert page.status_code == 200
    assert "<script>" not in page.text and "<img" not in page.text
    assert "&lt;script&gt;alert(&#x27;k&#x27;)&lt;/script&gt;" in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    deadline = time.monotonic() + 10
    while "base64:</span> <pre>/wAB</pre>" not in (html := console_stack.admin.get("/ui/state/Box/bin").text):
        assert time.monotonic() < deadline, html
        time.sleep(0.1)
    assert console_stack.admin.get("/ui/state/NoSuchService/x").status_code == 404


def test_invocation_page_shows_journal_timeline(console_stack: ConsoleStack) -> None:
    inv_id = waiting_invocation(console_stack, "timeline")
    page = console_stack.admin.get(f"/ui/invocations/{inv_id}")
    assert page.status_code == 200
    html = page.text
    assert "Waiter/timeline/wait" in html
    assert "noted" in html  # the run entry
    assert "Command: Run" in html and "Notification: Run" in html
    assert f'action="/ui/invocations/{inv_id}/cancel"' in html
    assert 'href="/ui/state/Waiter/timeline"' in html
    console_stack.admin.patch(f"/invocations/{inv_id}/kill")


def test_cancel_button_cancels_and_redirects_with_flash(console_stack: ConsoleStack) -> None:
    inv_id = waiting_invocation(console_stack, "c1")
    r = console_stack.admin.post(f"/ui/invocations/{inv_id}/cancel")
    assert r.status_code == 303
    assert r.headers["location"] == f"/ui/invocations/{inv_id}?done=cancel"
    row = wait_status(console_stack, inv_id, {"completed"})
    assert "cancel" in str(row.get("completion_failure")).lower()
    page = console_stack.admin.get(r.headers["location"])
    assert page.status_code == 200 and "Cancellation requested." in page.text
    # Cancelling again does not apply any more: the redirect carries a fixed failure text.
    again = console_stack.admin.post(f"/ui/invocations/{inv_id}/cancel", follow_redirects=True)
    assert again.status_code == 200
    assert "does not apply" in again.text


def test_kill_then_purge_buttons(console_stack: ConsoleStack) -> None:
    inv_id = waiting_invocation(console_stack, "k1")
    r = console_stack.admin.post(f"/ui/invocations/{inv_id}/kill")
    assert r.status_code == 303 and r.headers["location"].endswith("?done=kill")
    row = wait_status(console_stack, inv_id, {"completed"})
    assert row.get("completion_failure")
    r = console_stack.admin.post(f"/ui/invocations/{inv_id}/purge", follow_redirects=True)
    assert r.status_code == 404  # purged: the page of the invocation is gone
    assert not query(console_stack, f"SELECT id FROM sys_invocation WHERE id = '{inv_id}'")


def test_pause_and_resume_buttons(console_stack: ConsoleStack) -> None:
    inv_id = waiting_invocation(console_stack, "p1")
    r = console_stack.admin.post(f"/ui/invocations/{inv_id}/pause", follow_redirects=True)
    assert r.status_code == 200, r.text
    assert "Pause requested." in r.text
    wait_status(console_stack, inv_id, {"paused"})
    r = console_stack.admin.post(f"/ui/invocations/{inv_id}/resume", follow_redirects=True)
    assert r.status_code == 200 and "Resume requested." in r.text
    wait_status(console_stack, inv_id, {"suspended", "running", "pending", "ready"})
    console_stack.admin.patch(f"/invocations/{inv_id}/kill")


def test_cross_site_post_is_refused(console_stack: ConsoleStack) -> None:
    inv_id = waiting_invocation(console_stack, "x1")
    r = console_stack.admin.post(
        f"/ui/invocations/{inv_id}/kill",
        headers={"origin": "http://evil.example", "sec-fetch-site": "cross-site"},
    )
    assert r.status_code == 403
    assert wait_status(console_stack, inv_id, {"suspended", "running", "pending", "backing-off"})
    console_stack.admin.patch(f"/invocations/{inv_id}/kill")


def test_unknown_invocation_and_pages_are_404(console_stack: ConsoleStack) -> None:
    r = console_stack.admin.get("/ui/invocations/inv_1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    assert r.status_code == 404
    assert "does not exist" in r.text
    hostile = console_stack.admin.get("/ui/invocations/" + quote("<script>x</script>", safe=""))
    assert hostile.status_code == 404 and "<script>" not in hostile.text
    assert console_stack.admin.get("/ui/nope").status_code == 404
    assert console_stack.admin.get("/ui/invocations/x/cancel").status_code == 405  # actions are POST only
    assert console_stack.admin.post("/ui/invocations/x/frobnicate").status_code == 404
    assert console_stack.admin.post("/ui").status_code == 405


def test_sql_form_runs_queries_and_shows_errors(console_stack: ConsoleStack) -> None:
    assert console_stack.admin.get("/ui/sql").status_code == 200
    sql = "SELECT name, ty FROM sys_service WHERE name IN ('Box', 'Waiter') ORDER BY name"
    ok = console_stack.admin.post("/ui/sql", data={"query": sql})
    assert ok.status_code == 200
    assert "<td><pre>Box</pre></td>" in ok.text and "2 row(s)" in ok.text
    # The same query by its shareable URL, and as downloads.
    shared = console_stack.admin.get("/ui/sql", params={"q": sql})
    assert shared.status_code == 200 and "<td><pre>Box</pre></td>" in shared.text
    assert "sys_invocation" in shared.text and "target_service_name" in shared.text  # the table list
    csv_text = console_stack.admin.get("/ui/sql/download", params={"q": sql, "format": "csv"})
    assert csv_text.status_code == 200 and "attachment" in csv_text.headers["content-disposition"]
    assert csv_text.text.splitlines() == ["name,ty", "Box,virtual_object", "Waiter,virtual_object"]
    as_json = console_stack.admin.get("/ui/sql/download", params={"q": sql, "format": "json"})
    assert as_json.json()["rows"][0] == {"name": "Box", "ty": "virtual_object"}
    bad = console_stack.admin.post("/ui/sql", data={"query": "SELEC nonsense"})
    assert bad.status_code == 400
    assert 'class="error"' in bad.text
    write = console_stack.admin.post("/ui/sql", data={"query": "DELETE FROM state"})
    assert write.status_code == 400
    assert "only read-only queries are allowed" in write.text
    missing = console_stack.admin.post("/ui/sql", data={"query": "SELECT * FROM no_such_table"})
    assert missing.status_code == 400 and 'class="error"' in missing.text


def test_versioned_admin_paths_still_route(console_stack: ConsoleStack) -> None:
    # The hook does not disturb the JSON API next to it.
    r = httpx.get(f"{console_stack.server.admin_url}/v3/services", timeout=10)
    assert r.status_code == 200 and "services" in r.json()


def test_sql_form_refuses_cross_site_and_rebound_posts(console_stack: ConsoleStack) -> None:
    form = {"query": "SELECT 1 AS n"}
    foreign = console_stack.admin.post("/ui/sql", data=form, headers={"origin": "http://evil.example"})
    assert foreign.status_code == 403
    # A DNS-rebinding page: Host and Origin agree with each other, not with the console's address.
    port = console_stack.admin.base_url.port
    rebound = {"host": f"rebind.example:{port}", "origin": f"http://rebind.example:{port}"}
    assert console_stack.admin.post("/ui/sql", data=form, headers=rebound).status_code == 403
    inv_id = waiting_invocation(console_stack, "rebind")
    assert console_stack.admin.post(f"/ui/invocations/{inv_id}/kill", headers=rebound).status_code == 403
    own = console_stack.admin.post(
        "/ui/sql", data=form, headers={"origin": str(console_stack.admin.base_url).rstrip("/")}
    )
    assert own.status_code == 200 and "1 row(s)" in own.text
    console_stack.admin.patch(f"/invocations/{inv_id}/kill")


def test_state_page_of_an_object_with_10000_keys_is_paged(console_stack: ConsoleStack) -> None:
    state = {f"k{i:05d}": list(b'"' + b"v" * 200 + b'"') for i in range(10_000)}
    r = console_stack.admin.post("/services/Box/state", json={"object_key": "many", "new_state": state})
    assert r.status_code in (200, 202), r.text
    deadline = time.monotonic() + 20
    while not query(console_stack, "SELECT key FROM state WHERE service_key = 'many' AND key = 'k09999'"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    started = time.monotonic()
    first = console_stack.admin.get("/ui/state/Box/many")
    assert first.status_code == 200, first.text[:500]
    assert time.monotonic() - started < 10
    assert "k00000" in first.text and "k00099" in first.text and "k00100" not in first.text
    assert 'href="/ui/state/Box/many?after=k00099"' in first.text
    second = console_stack.admin.get("/ui/state/Box/many", params={"after": "k00099"})
    assert second.status_code == 200
    assert "k00100" in second.text and "k00099" not in second.text and "First page" in second.text
    last = console_stack.admin.get("/ui/state/Box/many", params={"after": "k09949"})
    assert "k09999" in last.text and "Next page" not in last.text
