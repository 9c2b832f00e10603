"""The console in a real browser: Debian's headless Chromium driven by Playwright, against the real server and
official-SDK services of conftest.py, with invocations running, backing off, paused, scheduled, completed and
killed. Every page visited is saved as a screenshot under .artifacts/console-screenshots/."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_support import ConsoleStack
from test_console_e2e import query, send, wait_status, waiting_invocation

from pyrestate.testing import ServiceApp

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "console-screenshots"
HERE = Path(__file__).parent

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extras)")
if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
    pytest.skip(
        "Debian's chromium is not installed (.ci/run installs it); browser tests skipped",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, console_stack: ConsoleStack) -> Iterator[Any]:
    context = browser.new_context(base_url=str(console_stack.admin.base_url).rstrip("/"))
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    # Any dialog that is not one of the console's confirmations is an injected script running.
    pg.dialogs = []  # type: ignore[attr-defined]

    def on_dialog(d: Any) -> None:
        pg.dialogs.append((d.type, d.message))
        if d.type == "confirm" and getattr(pg, "refuse_next", False):
            pg.refuse_next = False
            d.dismiss()
        else:
            d.accept()

    pg.on("dialog", on_dialog)
    try:
        yield pg
        assert [m for t, m in pg.dialogs if t != "confirm"] == [], "a script ran from page content"
    finally:
        context.close()


def shot(pg: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def scene(console_stack: ConsoleStack) -> dict[str, str]:
    """One invocation in each status the console shows."""
    s = console_stack
    ids: dict[str, str] = {}
    r = s.ingress.post("/Caller/fan", json="br")
    assert r.status_code == 200, r.text
    ids["caller"] = query(s, "SELECT id FROM sys_invocation WHERE target = 'Caller/fan' LIMIT 1")[0]["id"]  # type: ignore[assignment]
    ids["failing"] = send(s, "Flaky/fail", "br")
    ids["scheduled"] = s.ingress.post("/Box/later/put/send?delay=1h", json="later").json()["invocationId"]
    ids["running"] = send(s, "Slow/work", 600)
    ids["paused"] = waiting_invocation(s, "br-paused")
    assert s.admin.patch(f"/invocations/{ids['paused']}/pause").status_code in (200, 202)
    ids["killed"] = waiting_invocation(s, "br-killed")
    assert s.admin.patch(f"/invocations/{ids['killed']}/kill").status_code in (200, 202)
    ids["workflow"] = send(s, "Signup/w-br/run", "a@example.com")
    wait_status(s, ids["failing"], {"backing-off"})
    wait_status(s, ids["paused"], {"paused"})
    wait_status(s, ids["killed"], {"completed"})
    return ids


def test_overview_and_invocation_search(
    page: Any, scene: dict[str, str], console_stack: ConsoleStack
) -> None:
    page.goto("/ui")
    shot(page, "01-overview")
    failing = page.locator("#overview-now")
    assert "Flaky/fail" in failing.inner_text()
    assert page.locator("#live").is_checked()

    page.get_by_role("link", name="Invocations").first.click()
    page.get_by_label("Service").fill("Box")
    page.get_by_label("Status").select_option("scheduled")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"service=Box.*status=scheduled"))
    shot(page, "02-invocations-filtered")
    rows = page.locator("#inv-results tbody tr")
    assert rows.count() >= 1
    assert page.locator("#inv-results .st-scheduled").count() >= 1
    assert scene["scheduled"] in page.locator("#inv-results").inner_text()
    # The URL is the search: opening it again shows the same rows.
    shared = page.url
    page.goto(shared)
    assert scene["scheduled"] in page.locator("#inv-results").inner_text()

    # Live refresh keeps the user's place: a new invocation shows up without a reload, while the half-typed
    # filter stays as it is.
    page.goto("/ui/invocations?service=Box")
    page.locator("#live").check()
    page.wait_for_url(re.compile(r"live=1"))
    page.get_by_label("Handler").fill("typing")
    new_id = send(console_stack, "Box/live-one/put", "x")
    page.wait_for_function(
        "id => document.getElementById('inv-results').innerText.includes(id)", arg=new_id, timeout=15_000
    )
    assert page.get_by_label("Handler").input_value() == "typing"
    shot(page, "03-invocations-live")


def test_paging_through_many_rows(page: Any, console_stack: ConsoleStack) -> None:
    for i in range(60):
        send(console_stack, f"Box/page-{i:02d}/put", "p")
    page.goto("/ui/invocations?handler=put&service=Box")
    first = set(page.locator("#inv-results tbody tr td:first-child").all_inner_texts())
    assert len(first) == 50
    page.get_by_role("link", name="Older »").click()
    second = set(page.locator("#inv-results tbody tr td:first-child").all_inner_texts())
    assert second and not (first & second)
    assert "service=Box" in page.url and "before=" in page.url
    shot(page, "04-invocations-page-2")


def test_invocation_timeline_links_and_actions(page: Any, scene: dict[str, str]) -> None:
    page.goto(f"/ui/invocations/{scene['caller']}")
    shot(page, "05-invocation-completed")
    journal = page.locator("#journal")
    text = journal.inner_text()
    assert "Command: Call" in text and "Command: OneWayCall" in text and "wakes up at" in text
    assert "+" in text and " ms" in text
    assert page.get_by_role("heading", name="Output").is_visible()
    assert '"from-caller"' in page.locator("#inv-detail").inner_text()
    # Completed: purge only.
    assert page.get_by_role("button", name="purge").count() == 1
    assert page.get_by_role("button", name="kill").count() == 0
    callee = journal.locator("a[href^='/ui/invocations/inv_']").first
    callee.click()
    page.wait_for_url(re.compile(r"/ui/invocations/inv_"))
    assert page.locator(f"a[href='/ui/invocations/{scene['caller']}']").count() == 1  # linked back
    shot(page, "06-invocation-callee")

    page.goto(f"/ui/invocations/{scene['failing']}")
    shot(page, "07-invocation-backing-off")
    retries = page.locator("#retries").inner_text()
    assert "RuntimeError: flaky failure for br" in retries and "Traceback" in retries
    assert page.get_by_role("button", name="pause").count() == 1
    assert page.get_by_role("button", name="resume").count() == 0
    assert page.get_by_role("button", name="purge").count() == 0
    assert page.locator("text=restart").count() == 0
    # Refusing the confirmation changes nothing; accepting it kills.
    page.refuse_next = True
    page.get_by_role("button", name="kill").click()
    time.sleep(0.5)
    assert page.dialogs[-1][0] == "confirm"
    assert page.get_by_role("button", name="kill").count() == 1
    page.get_by_role("button", name="kill").click()
    page.wait_for_url(re.compile(r"done=kill"))
    assert "Kill requested." in page.content()

    page.goto(f"/ui/invocations/{scene['paused']}")
    shot(page, "08-invocation-paused")
    assert page.get_by_role("button", name="resume").count() == 1
    assert page.get_by_role("button", name="pause").count() == 0

    page.goto(f"/ui/invocations/{scene['running']}")
    shot(page, "09-invocation-running")
    assert page.locator(".st-running").count() == 1
    assert "waiting…" in page.locator("#journal").inner_text()

    page.goto(f"/ui/invocations/{scene['killed']}")
    shot(page, "10-invocation-killed")
    assert page.locator(".st-failure").count() == 1


def test_services_invoke_and_openapi(page: Any, scene: dict[str, str]) -> None:
    page.goto("/ui/services")
    shot(page, "11-services")
    page.get_by_role("link", name="Box", exact=True).click()
    page.wait_for_url(re.compile(r"/ui/services/Box$"))
    assert "VirtualObject" in page.content()
    page.get_by_label("Handler").select_option("put")
    page.get_by_label("Key", exact=True).fill("from-form")
    page.get_by_label("JSON body").fill('"typed in a form"')
    page.get_by_role("button", name="Invoke").click()
    result = page.locator("#invoke-result")
    result.wait_for()
    assert '"typed in a form"' in result.inner_text()
    shot(page, "12-service-invoked")
    page.get_by_label("JSON body").fill("{not json")
    page.get_by_role("button", name="Invoke").click()
    assert "The body is not JSON" in page.locator(".error").inner_text()
    page.get_by_label("JSON body").fill('"sent"')
    page.get_by_label("send (do not wait)").check()
    page.get_by_role("button", name="Invoke").click()
    assert "sent." in page.locator("#invoke-result").inner_text()
    page.get_by_role("link", name="OpenAPI document").click()
    assert '"openapi"' in page.content() and "/Box/{key}/put" in page.content()


def test_state_keys_edit_and_version_check(
    page: Any, scene: dict[str, str], console_stack: ConsoleStack
) -> None:
    assert (
        console_stack.ingress.post("/Box/edit-me/put", json="<img src=x onerror=alert(1)>").status_code == 200
    )
    page.goto("/ui/state/Box")
    shot(page, "13-keys")
    page.get_by_role("link", name="edit-me").click()
    page.wait_for_url(re.compile(r"/ui/state/Box/edit-me$"))
    state = page.locator("#state").inner_text()
    assert "<script>alert('k')</script>" in state and "<img src=x onerror=alert(1)>" in state  # as text
    shot(page, "14-state")
    row = page.locator("#state tbody tr", has_text="plain")
    row.locator("summary").click()
    row.locator("textarea").fill('{"edited": true}')
    row.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"done=state"))
    deadline = time.monotonic() + 10
    while '"edited": true' not in page.locator("#state").inner_text():
        assert time.monotonic() < deadline
        page.reload()
    # A change made elsewhere after the page was loaded: the console's edit is refused, nothing is lost.
    page.get_by_label("State key").fill("added")
    page.locator("#new-value").fill("1")
    r = console_stack.admin.post(
        "/services/Box/state", json={"object_key": "edit-me", "new_state": {"plain": list(b'"other"')}}
    )
    assert r.status_code == 202
    deadline = time.monotonic() + 10
    while not query(
        console_stack, "SELECT key FROM state WHERE service_key = 'edit-me' AND value_utf8 = '\"other\"'"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    page.locator("#add-state").get_by_role("button", name="Save").click()
    assert "state changed since the page was loaded" in page.locator(".error").inner_text()
    shot(page, "15-state-conflict")

    console_stack.ingress.post("/Signup/w-br/confirm", json="code-1")
    page.goto("/ui/state/Signup/w-br")
    promises = page.locator("text=Promises")
    promises.wait_for()
    assert "confirmed" in page.content()
    shot(page, "16-workflow-state")


def test_sql_page(page: Any, scene: dict[str, str]) -> None:
    page.goto("/ui/sql")
    assert page.locator("aside summary", has_text="sys_invocation").count() >= 1
    page.get_by_role("link", name="Paused invocations").click()
    page.wait_for_url(re.compile(r"/ui/sql\?q="))
    table = page.locator("#sql-result")
    table.wait_for()
    shot(page, "17-sql")
    shared = page.url
    with page.expect_download() as dl:
        page.get_by_role("link", name="CSV").click()
    assert dl.value.suggested_filename == "query.csv"
    page.goto(shared)
    page.locator("#sql-result a[href^='/ui/invocations/']").first.click()
    page.wait_for_url(re.compile(r"/ui/invocations/inv_"))


def test_register_and_remove_a_deployment(page: Any, console_stack: ConsoleStack, tmp_path: Path) -> None:
    app = ServiceApp("console_app:other", log_dir=tmp_path, cwd=HERE, pythonpath=[HERE])
    app.start()
    try:
        page.goto("/ui/deployments")
        page.get_by_label("Endpoint URI").fill(app.url)
        page.get_by_role("button", name="Register").click()
        page.wait_for_url(re.compile(r"done=registered"))
        row = page.locator("tr", has_text="Extra")
        assert row.count() == 1
        shot(page, "18-deployments")
        page.goto("/ui/deployments")
        page.get_by_label("Endpoint URI").fill("http://127.0.0.1:1/nothing-here")
        page.get_by_role("button", name="Register").click()
        assert "Registration failed" in page.locator(".error").inner_text()
        page.goto("/ui/deployments")
        page.locator("tr", has_text="Extra").get_by_role("button", name="remove").click()
        page.wait_for_url(re.compile(r"done=removed"))
        assert page.locator("tr", has_text="Extra").count() == 0
        assert page.locator("tr", has_text=console_stack.deployment_id).count() == 1
    finally:
        app.close()
