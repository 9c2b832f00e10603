"""`/query` under attack through a real server: memory-hungry scalar functions (`repeat`), an expression of
20,000 terms and a huge statement are refused with a JSON error (503 for memory, 400 for shape), the query
workers survive or are replaced, and the next query works. The memory share is small here (64 MiB per
query) so the attacks stay quick; `SELECT length(repeat('x', 2000000000))` is the full-size version."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from resfaults_apps import counter_app

from pyrestate.testing import LocalRestate, RuntimeConfig, local_restate

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def env() -> Iterator[LocalRestate]:
    config = RuntimeConfig(extra_env={"PYRESTATE_QUERY_MEMORY_SIZE": "128MiB"})
    with local_restate(counter_app, config=config) as e:
        yield e


def _query(env: LocalRestate, sql: str) -> httpx.Response:
    with httpx.Client(base_url=env.admin_url, timeout=60) as c:
        return c.post("/query", json={"query": sql}, headers={"accept": "application/json"})


def _still_serves(env: LocalRestate) -> None:
    r = _query(env, "SELECT 41 + 1 AS n")
    assert (r.status_code, r.json()["rows"]) == (200, [{"n": 42}]), r.text


def test_two_huge_repeats_at_once_get_503_and_the_next_query_works(env: LocalRestate) -> None:
    sql = "SELECT length(repeat('x', 300000000)) AS n"
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: _query(env, sql), range(2)))
    for r in answers:
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/json"
        assert "Resources exhausted" in r.json()["message"], r.text
    _still_serves(env)
    _still_serves(env)  # both workers were replaced


def test_an_expression_of_20000_terms_is_refused_before_planning(env: LocalRestate) -> None:
    r = _query(env, "SELECT " + "+".join(["1"] * 20_000))
    assert r.status_code == 400, r.text
    assert "operators" in r.json()["message"]
    r = _query(env, "SELECT " + "(" * 200 + "1" + ")" * 200)
    assert r.status_code == 400, r.text
    _still_serves(env)


def test_a_huge_statement_is_refused(env: LocalRestate) -> None:
    r = _query(env, "SELECT 1 AS n -- " + "x" * 100_000)
    assert r.status_code == 400, r.text
    assert "bytes long" in r.json()["message"]
    _still_serves(env)


def test_a_sort_past_the_pool_gets_503(env: LocalRestate) -> None:
    r = _query(
        env,
        "SELECT v FROM (SELECT repeat('x', 1000) || CAST(value AS VARCHAR) AS v "
        "FROM generate_series(1, 200000)) ORDER BY v DESC",
    )
    assert r.status_code in (400, 503), r.text  # 400: the result would exceed its row/byte bound first
    _still_serves(env)
