from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from engine_support import SdkDeployment, fast_config, journaled, journaled_on_disk, register, start_sdk

from pyrestate.protocol.framing import MessageType
from pyrestate.server.core_api import (
    BadRequest,
    ById,
    ByWorkflow,
    CommandOutcome,
    Failure,
    IngressInvocation,
    InvocationCommand,
    InvocationTarget,
    NotFound,
    NotReady,
    SubmitStatus,
    Success,
)
from pyrestate.server.engine.core import EngineCore
from pyrestate.server.partition.retry import RetryPolicy
from pyrestate.testing.ingress import eventually_async


def _inv(service: str, handler: str, body: object, key: str | None = None, **kw: object) -> IngressInvocation:
    return IngressInvocation(
        target=InvocationTarget(service, handler, key),
        body=json.dumps(body).encode(),
        headers=(("content-type", "application/json"),),
        **kw,  # type: ignore[arg-type]
    )


async def test_plain_call(core: EngineCore) -> None:
    result = await core.call(_inv("Greeter", "greet", "bob"))
    assert result.outcome == Success(b'"hello bob"', "application/json")
    assert result.invocation_id.startswith("inv_1")
    assert result.expires_at_ms is None


async def test_terminal_error_becomes_failure(core: EngineCore) -> None:
    result = await core.call(_inv("Greeter", "fail", 422))
    assert result.outcome == Failure(422, "bad input")


async def test_retrying_handler_succeeds_on_third_attempt(core: EngineCore, sdk: SdkDeployment) -> None:
    tag = uuid.uuid4().hex
    result = await core.call(_inv("Greeter", "flaky", tag))
    assert result.outcome == Success(b'"succeeded on attempt 3"', "application/json")
    assert sdk.counter(f"flaky-{tag}") == 3


async def test_run_result_is_journaled_and_not_rerun(core: EngineCore, sdk: SdkDeployment) -> None:
    tag = uuid.uuid4().hex
    result = await core.call(_inv("Greeter", "run_once", tag))
    assert result.outcome == Success(b'"run value 1"', "application/json")
    assert sdk.counter(f"run-{tag}") == 1
    assert sdk.counter(f"attempt-{tag}") == 2


async def test_counter_state_and_serialised_adds(core: EngineCore) -> None:
    key = uuid.uuid4().hex
    results = await asyncio.gather(*(core.call(_inv("Counter", "add", 1, key)) for _ in range(5)))
    values = sorted(int(r.outcome.value) for r in results if isinstance(r.outcome, Success))
    assert values == [1, 2, 3, 4, 5]  # no lost update: the exclusive handler ran one at a time
    got = await core.call(IngressInvocation(InvocationTarget("Counter", "get", key), b"", ()))
    assert got.outcome == Success(b"5", "application/json")


async def test_sleep_fires_durable_timer(core: EngineCore) -> None:
    started = time.monotonic()
    result = await core.call(_inv("Greeter", "sleepy", 300))
    assert result.outcome == Success(b'"slept"', "application/json")
    assert time.monotonic() - started >= 0.3


async def test_fan_out_calls_and_gather(core: EngineCore) -> None:
    result = await core.call(_inv("Greeter", "fan_out", 4))
    assert isinstance(result.outcome, Success)
    assert json.loads(result.outcome.value) == [1, 4, 9, 16]


async def test_delayed_one_way_send(core: EngineCore) -> None:
    key = uuid.uuid4().hex
    started = time.monotonic()
    result = await core.call(_inv("Counter", "schedule_add", 400, key))
    assert result.outcome == Success(b'"scheduled"', "application/json")
    get = IngressInvocation(InvocationTarget("Counter", "get", key), b"", ())
    assert (await core.call(get)).outcome == Success(b"0", "application/json")
    while (await core.call(get)).outcome != Success(b"100", "application/json"):
        assert time.monotonic() - started < 10
        await asyncio.sleep(0.05)
    assert time.monotonic() - started >= 0.4


async def test_idempotency_key_dedup(core: EngineCore, sdk: SdkDeployment) -> None:
    tag = uuid.uuid4().hex
    first = await core.call(
        _inv("Greeter", "flaky", tag, idempotency_key="k1", user_supplied_idempotency_key=True)
    )
    second = await core.call(
        _inv("Greeter", "flaky", "other", idempotency_key="k1", user_supplied_idempotency_key=True)
    )
    assert first.invocation_id == second.invocation_id
    assert first.outcome == second.outcome == Success(b'"succeeded on attempt 3"', "application/json")
    assert first.expires_at_ms is None and second.expires_at_ms is not None
    assert sdk.counter(f"flaky-{tag}") == 3
    receipt = await core.send(_inv("Greeter", "flaky", tag, idempotency_key="k1"))
    assert receipt.status is SubmitStatus.PREVIOUSLY_ACCEPTED and receipt.invocation_id == first.invocation_id


async def test_send_then_output_and_attach(core: EngineCore) -> None:
    receipt = await core.send(_inv("Greeter", "sleepy", 300))
    assert receipt.status is SubmitStatus.ACCEPTED
    with pytest.raises(NotReady):
        await core.get_output(ById(receipt.invocation_id))
    attached = await core.attach(ById(receipt.invocation_id))
    assert attached.outcome == Success(b'"slept"', "application/json")
    out = await core.get_output(ById(receipt.invocation_id))
    assert out.outcome == attached.outcome and out.expires_at_ms is not None
    with pytest.raises(NotFound):
        await core.get_output(ById("inv_1" + "0" * 33))


async def test_request_response_mode_suspends_and_resumes(tmp_path: Path, sdk: SdkDeployment) -> None:
    c = EngineCore(fast_config(tmp_path / "data", inactivity_timeout_ms=0))
    await c.start()
    try:
        await register(c, sdk.url)
        result = await c.call(_inv("Greeter", "fan_out", 3))
        assert isinstance(result.outcome, Success) and json.loads(result.outcome.value) == [1, 4, 9]
        result = await c.call(_inv("Greeter", "sleepy", 50))
        assert result.outcome == Success(b'"slept"', "application/json")
    finally:
        await c.stop()


async def test_http11_deployment(tmp_path: Path, sdk: SdkDeployment) -> None:
    c = EngineCore(fast_config(tmp_path / "data"))
    await c.start()
    try:
        await register(c, sdk.url, use_http_11=True)
        key = uuid.uuid4().hex
        assert (await c.call(_inv("Counter", "add", 7, key))).outcome == Success(b"7", "application/json")
        assert (await c.call(_inv("Greeter", "fan_out", 2))).outcome == Success(b"[1, 4]", "application/json")
    finally:
        await c.stop()


async def test_restart_mid_sleep_completes(tmp_path: Path, sdk: SdkDeployment) -> None:
    data = tmp_path / "data"
    c = EngineCore(fast_config(data))
    await c.start()
    await register(c, sdk.url)
    receipt = await c.send(_inv("Greeter", "sleepy", 1000))
    await journaled(c, receipt.invocation_id, MessageType.SLEEP)  # the stop comes mid-sleep
    await c.stop()
    c2 = EngineCore(fast_config(data))
    await c2.start()
    try:
        result = await asyncio.wait_for(c2.attach(ById(receipt.invocation_id)), 10)
        assert result.outcome == Success(b'"slept"', "application/json")
    finally:
        await c2.stop()


async def test_awakeable_completion_from_ingress(core: EngineCore, sdk: SdkDeployment) -> None:
    tag = uuid.uuid4().hex
    receipt = await core.send(_inv("Greeter", "await_awakeable", tag))
    path = sdk.state_dir / f"awk-{tag}"
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await core.complete_awakeable(path.read_text(), Success(b'"yes"'))
    result = await asyncio.wait_for(core.attach(ById(receipt.invocation_id)), 10)
    assert result.outcome == Success(b'"got yes"', "application/json")
    with pytest.raises(BadRequest):
        await core.complete_awakeable("garbage", Success(b"1"))


async def test_workflow_runs_once_and_promise_resolves(core: EngineCore) -> None:
    key = uuid.uuid4().hex
    receipt = await core.send(_inv("Wf", "run", "order", key))
    assert receipt.status is SubmitStatus.ACCEPTED
    again = await core.send(_inv("Wf", "run", "order", key))
    assert again.status is SubmitStatus.PREVIOUSLY_ACCEPTED and again.invocation_id == receipt.invocation_id
    dup = await core.call(_inv("Wf", "run", "order", key))
    assert dup.outcome == Failure(409, "the workflow method was already invoked")
    assert dup.invocation_id == receipt.invocation_id
    with pytest.raises(NotReady):
        await core.get_output(ByWorkflow("Wf", key))
    assert (await core.call(_inv("Wf", "approve", "alice", key))).outcome == Success(
        b'"ok"', "application/json"
    )
    result = await asyncio.wait_for(core.attach(ByWorkflow("Wf", key)), 10)
    assert result.outcome == Success(b'"order approved by alice"', "application/json")
    second = await core.call(_inv("Wf", "approve", "bob", key))
    assert second.outcome == Failure(409, "promise was already completed")


async def test_kill_9_then_restart_completes_everything(tmp_path: Path, sdk: SdkDeployment) -> None:
    data = tmp_path / "data"
    key = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "engine_proc.py"), str(data), sdk.url, key],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parent,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        ids = json.loads(line)
        # The kill comes mid-sleep (1.5 s); the adds are wherever they got to, queued or done.
        await asyncio.to_thread(journaled_on_disk, data, ids[0], MessageType.SLEEP)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    c = EngineCore(fast_config(data))
    await c.start()
    try:
        results = [await asyncio.wait_for(c.attach(ById(i)), 15) for i in ids]
        assert results[0].outcome == Success(b'"slept"', "application/json")
        assert [r.outcome for r in results[1:]] == [
            Success(str(n).encode(), "application/json") for n in (1, 2, 3)
        ]
    finally:
        await c.stop()


async def test_attach_from_a_handler_and_output_of_a_handler_created_invocation(core: EngineCore) -> None:
    result = await asyncio.wait_for(core.call(_inv("Greeter", "spawn_and_attach", 200)), 15)
    assert isinstance(result.outcome, Success)
    child, value = json.loads(result.outcome.value)
    assert value == "slept"
    # Sent by a handler without an idempotency key: kept for the journal retention, so output works.
    out = await core.get_output(ById(child))
    assert out.outcome == Success(b'"slept"', "application/json")


async def test_named_signal_sent_before_it_is_awaited(core: EngineCore, sdk: SdkDeployment) -> None:
    tag = uuid.uuid4().hex
    receipt = await core.send(_inv("Greeter", "wait_signal", tag))
    path = sdk.state_dir / f"sig-{tag}"
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await core.call(_inv("Greeter", "send_signal", [path.read_text(), "early"]))
    result = await asyncio.wait_for(core.attach(ById(receipt.invocation_id)), 10)
    assert result.outcome == Success(b'"signalled early"', "application/json")


async def test_retention_expiry_reclaims_the_invocation(tmp_path: Path, sdk: SdkDeployment) -> None:
    c = EngineCore(
        fast_config(
            tmp_path / "data",
            idempotency_retention_ms=600,
            journal_retention_ms=600,
            workflow_completion_retention_ms=600,
        )
    )
    await c.start()
    try:
        await register(c, sdk.url)
        plain = await c.call(_inv("Greeter", "greet", "x", idempotency_key="ik"))
        key = uuid.uuid4().hex
        receipt = await c.send(_inv("Wf", "run", "order", key))
        await c.call(_inv("Wf", "approve", "alice", key))
        await asyncio.wait_for(c.attach(ByWorkflow("Wf", key)), 10)
        assert (await c.get_output(ById(plain.invocation_id))).outcome == plain.outcome
        assert c.storage.reader().get_journal(receipt.invocation_id) != []

        async def reclaimed() -> None:
            for iid in (plain.invocation_id, receipt.invocation_id):
                try:
                    await c.get_output(ById(iid))
                except NotFound:
                    pass
                else:
                    raise AssertionError(f"{iid} is still retained")
                assert c.storage.reader().get_journal(iid) == []

        await eventually_async(reclaimed, 10, interval=0.05)
        # The workflow's promises and state went with it: the key can run again.
        again = await c.send(_inv("Wf", "run", "order", key))
        assert again.status is SubmitStatus.ACCEPTED
    finally:
        await c.stop()


async def test_pending_retry_backoff_survives_a_restart(tmp_path: Path, sdk: SdkDeployment) -> None:
    data = tmp_path / "data"
    policy = RetryPolicy(initial_interval_ms=1500, max_interval_ms=1500)
    tag = uuid.uuid4().hex
    c = EngineCore(fast_config(data, retry_policy=policy))
    await c.start()
    await register(c, sdk.url)
    receipt = await c.send(_inv("Greeter", "flaky", tag))
    deadline = time.monotonic() + 10
    while sdk.counter(f"flaky-{tag}") < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)

    async def backing_off() -> None:  # the failure is applied: the next attempt is 1.5 s away
        st = c.invocation_status(receipt.invocation_id)
        assert st is not None and st.next_retry_at is not None, st

    await eventually_async(backing_off, 10, interval=0.02)
    await c.stop()
    c2 = EngineCore(fast_config(data, retry_policy=policy))
    await c2.start()
    try:
        await asyncio.sleep(0.6)  # time passes, and no attempt is made before the backoff is over
        assert sdk.counter(f"flaky-{tag}") == 1
        result = await asyncio.wait_for(c2.attach(ById(receipt.invocation_id)), 10)
        assert result.outcome == Success(b'"succeeded on attempt 3"', "application/json")
    finally:
        await c2.stop()


async def test_pinning_upgrade_pause_and_resume_on_another_deployment(
    tmp_path: Path, sdk: SdkDeployment
) -> None:
    policy = RetryPolicy(initial_interval_ms=50, max_interval_ms=50, max_attempts=2, on_max_attempts="pause")
    # A short inactivity timeout: the sleeper suspends, so its resumption is a new attempt that must go
    # back to the deployment it started on.
    c = EngineCore(fast_config(tmp_path / "data", retry_policy=policy, inactivity_timeout_ms=100))
    await c.start()
    v2 = start_sdk(sdk.state_dir, "v2")
    try:
        await register(c, sdk.url)
        in_flight = await c.send(_inv("Greeter", "versioned", 1200))
        broken = await c.send(_inv("Greeter", "broken_until_v2", None))
        deadline = time.monotonic() + 10
        while (st := c.invocation_status(broken.invocation_id)) is None or st.status.value != "paused":
            assert time.monotonic() < deadline, st
            await asyncio.sleep(0.05)
        assert st.total_attempts == 2 and st.last_failure is not None and "v1 cannot" in st.last_failure

        v2_id = await register(c, v2.url)
        fresh = await c.call(_inv("Greeter", "versioned", 0))
        assert fresh.outcome == Success(b'"v2"', "application/json")  # new invocations: latest revision
        pinned = await asyncio.wait_for(c.attach(ById(in_flight.invocation_id)), 10)
        assert pinned.outcome == Success(b'"v1"', "application/json")  # in flight: stays on v1

        with pytest.raises(BadRequest):
            await c.invocation_command(
                broken.invocation_id, InvocationCommand.RESUME, deployment_id="dp_nope"
            )
        outcome = await c.invocation_command(
            broken.invocation_id, InvocationCommand.RESUME, deployment_id=v2_id
        )
        assert outcome is CommandOutcome.DONE
        resumed = await asyncio.wait_for(c.attach(ById(broken.invocation_id)), 10)
        assert resumed.outcome == Success(b'"fixed by v2"', "application/json")
    finally:
        await c.stop()
        v2.process.stop()
