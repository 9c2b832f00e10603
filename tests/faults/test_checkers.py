"""The checkers and the model must be able to fail: each is fed a history with a known violation."""

from __future__ import annotations

import random

from pyrestate.testing.faults import (
    GeneratorConfig,
    SetHistory,
    Submission,
    analyse_steps,
    check_set,
    generate_workload,
    predict,
    side_record,
)
from pyrestate.testing.faults.programs import INCREMENTS, generate


def _lines(*records: tuple[str, ...]) -> list[str]:
    return [side_record(*r).decode() for r in records]


def test_steps_reexecution_before_record_is_allowed() -> None:
    report = analyse_steps(
        _lines(("exec", "inv/1", "a"), ("exec", "inv/1", "b"), ("seen", "inv/1", "b"), ("seen", "inv/1", "b"))
    )
    assert report.steps == 1 and report.executions == 2 and report.reexecuted == 1
    assert report.duplicated == []


def test_steps_changed_result_is_a_duplicate() -> None:
    report = analyse_steps(
        _lines(("exec", "inv/1", "a"), ("seen", "inv/1", "a"), ("exec", "inv/1", "b"), ("seen", "inv/1", "b"))
    )
    assert len(report.duplicated) == 1


def test_steps_result_nobody_produced_is_a_duplicate() -> None:
    report = analyse_steps(_lines(("exec", "inv/1", "a"), ("seen", "inv/1", "z"), ("bad", "get x")))
    assert len(report.duplicated) == 1 and report.bad == ["get x"]


def test_set_checker_finds_lost_unexpected_and_stale() -> None:
    h = SetHistory(
        ok={1: 1.0, 2: 2.0, 3: 3.0},
        fail={4},
        info={5, 6},
        reads=[(2.5, frozenset({1})), (9.0, frozenset({1, 2, 3}))],
    )
    report = check_set(h, frozenset({1, 3, 4, 5, 99}))
    assert report.acked == 3
    assert report.lost == [2]
    assert report.unexpected == [4, 99]
    assert len(report.stale_reads) == 1 and "missed [2]" in report.stale_reads[0]
    assert (report.indeterminate_present, report.indeterminate_absent) == (1, 1)


def test_set_checker_accepts_a_clean_history() -> None:
    h = SetHistory(ok={1: 1.0}, fail={2}, info={3}, reads=[(0.5, frozenset()), (1.5, frozenset({1, 3}))])
    report = check_set(h, frozenset({1}))
    assert report.lost == [] and report.unexpected == [] and report.stale_reads == []


def test_generator_is_seeded_and_covers_every_kind() -> None:
    cfg = GeneratorConfig()
    assert generate_workload(5, 30, cfg) == generate_workload(5, 30, cfg)
    assert generate_workload(5, 30, cfg) != generate_workload(6, 30, cfg)
    kinds: set[str] = set()

    def walk(p: dict[str, object], layer: int) -> None:
        for c in p["commands"]:  # type: ignore[attr-defined]
            kinds.add(c["kind"])
            if "program" in c:
                walk(c["program"], layer + 1)

    for s in generate_workload(5, 200, cfg):
        walk(s.program, 0)
    assert kinds >= INCREMENTS | {
        "set",
        "get",
        "clear",
        "sleep",
        "echo",
        "run",
        "run_flaky",
        "awakeable",
        "call_next",
        "send_next",
    }


def test_model_counts_nested_increments_and_final_state() -> None:
    rng = random.Random(0)
    program = generate(rng, 0, "p", GeneratorConfig())
    program["commands"] = [
        {"kind": "increment"},
        {"kind": "increment_delayed", "ms": 1},
        {"kind": "set", "name": "sp-0", "value": "a"},
        {"kind": "set", "name": "sp-1", "value": "b"},
        {"kind": "clear", "name": "sp-0"},
        {
            "kind": "call_next",
            "key": "k1",
            "program": {
                "pid": "p.5",
                "commands": [
                    {"kind": "increment_awakeable"},
                    {
                        "kind": "send_next",
                        "key": "k2",
                        "program": {"pid": "p.5.1", "commands": [{"kind": "increment_indirect"}]},
                    },
                ],
            },
        },
    ]
    model = predict([Submission("k0", "x", program)])
    assert dict(model.counters) == {(0, "k0"): 2, (1, "k1"): 1, (2, "k2"): 1}
    assert model.state == {(0, "k0", "sp-1"): "b"}
