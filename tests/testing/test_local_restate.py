"""`local_restate`: a server plus the user's apps, in-process and as a process, called through the ingress."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

import pyrestate.sdk as restate
from pyrestate.testing import AppProcess, InProcessApp, eventually, local_restate

HERE = Path(__file__).resolve().parent

greeter = restate.Service("HarnessGreeter")
greeted: list[str] = []  # in-process: the test sees what the handler did


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    greeting = await ctx.run("build greeting", lambda: f"Hello, {name}!")
    greeted.append(name)
    return greeting


def test_in_process_and_subprocess_apps_are_served_registered_and_stopped() -> None:
    with local_restate(restate.app([greeter]), "local_harness_app:app", pythonpath=[HERE]) as env:
        assert sorted(env.services) == ["HarnessCounter", "HarnessGreeter"]
        in_process, process = env.apps
        assert isinstance(in_process, InProcessApp) and isinstance(process, AppProcess)

        assert env.ingress.call_json("HarnessGreeter", "greet", "Ada") == "Hello, Ada!"
        assert greeted == ["Ada"]
        assert env.ingress.call_json("HarnessCounter", "add", 2, key="c1") == 2
        assert env.ingress.call_json("HarnessCounter", "add", 3, key="c1") == 5

        # Crash the app process mid-invocation: after a restart the durable call finishes exactly once.
        sent = env.ingress.send_json("HarnessCounter", "addSlowly", 10, key="c1")
        iid = sent["invocationId"]
        sql = f"SELECT index FROM sys_journal WHERE id = '{iid}' AND entry_type = 'Command: Sleep'"

        def sleeping() -> None:  # the kill comes mid-sleep, once the timer is recorded
            assert env.admin.query(sql), "the sleep is not journaled yet"

        eventually(sleeping)
        process.kill()
        process.start()
        assert env.ingress.attach(sent["invocationId"]).json() == 15
        urls = [env.ingress_url, env.admin_url, in_process.url, process.url]

    # Everything is stopped on exit: nobody answers on the ports any more.
    for url in urls:
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=2)


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state, ppid, ...
        if stat.rsplit(")", 1)[1].split()[1] == me:
            found.add(int(pid))
    return found


def test_a_broken_app_fails_fast_and_leaves_nothing_running() -> None:
    before = _children()
    with pytest.raises(Exception, match=r"no_such_module|exited"), local_restate("no_such_module:app"):
        pass
    assert _children() <= before
