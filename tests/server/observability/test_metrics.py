"""`GET /metrics` on the admin API of a real server, in Prometheus' text format: what an operator watches."""

from __future__ import annotations

import httpx
from metrics_app import app
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from pyrestate.testing import eventually, local_restate

Scrape = dict[str, list[Sample]]


def scrape(admin_url: str) -> Scrape:
    r = httpx.get(f"{admin_url}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def value(m: Scrape, family: str, sample: str = "", **labels: str) -> float:
    """Sum of the family's samples named family+sample (e.g. "_total", "_count") matching the labels."""
    name = family + sample
    found = [
        s.value
        for s in m.get(family, [])
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(found)


def test_metrics_follow_calls_failures_and_commits() -> None:
    with local_restate(app) as env:
        for name in ("a", "b", "c"):
            assert env.ingress.call_json("MetricsGreeter", "greet", name) == f"Hello {name}!"
        assert httpx.post(f"{env.ingress_url}/MetricsFlaky/fail/send", timeout=10).status_code == 202

        def failures_seen() -> Scrape:
            m = scrape(env.admin_url)
            assert value(m, "pyrestate_invoker_attempt_failures", "_total", service="MetricsFlaky") >= 2
            return m

        m = eventually(failures_seen, timeout=20)
        failed = value(m, "pyrestate_invoker_attempt_failures", "_total", service="MetricsFlaky", code="500")
        assert failed >= 2

        assert value(m, "pyrestate_ingress_requests", "_total", kind="call", status="200") == 3
        assert value(m, "pyrestate_ingress_requests", "_total", kind="send", status="202") == 1
        assert value(m, "pyrestate_ingress_request_duration_seconds", "_count", kind="call") == 3
        assert value(m, "pyrestate_invoker_attempts", "_total", service="MetricsGreeter") == 3
        assert value(m, "pyrestate_invoker_retries", "_total", service="MetricsFlaky") >= 1
        assert value(m, "pyrestate_invoker_retries", "_total", service="MetricsGreeter") == 0
        commits = value(m, "pyrestate_storage_commit_duration_seconds", "_count")
        assert commits > 0
        assert value(m, "pyrestate_storage_commit_batch_commands", "_count") == commits
        assert value(m, "pyrestate_storage_commit_batch_commands", "_sum") >= commits
        assert value(m, "pyrestate_partitions_owned") >= 1
        assert "pyrestate_invoker_attempts_running" in m
        # invocations by service and status, read from the store as sys_invocation shows them
        assert value(m, "pyrestate_invocations", service="MetricsGreeter", status="completed") == 3
        assert value(m, "pyrestate_invocations", service="MetricsFlaky") == 1


def test_timers_are_counted_with_their_lateness() -> None:
    with local_restate(app) as env:
        r = httpx.post(f"{env.ingress_url}/MetricsGreeter/greet/send?delay=200ms", json="later", timeout=10)
        assert r.status_code == 202

        def fired() -> None:
            m = scrape(env.admin_url)
            assert value(m, "pyrestate_timers_fired", "_total") >= 1
            assert value(m, "pyrestate_timer_lateness_seconds", "_count") >= 1

        eventually(fired, timeout=10)
