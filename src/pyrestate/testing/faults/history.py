"""Checkers over what the workloads observed (pure): step side files and Jepsen-style set histories."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Side-file records, one per line, tab-separated:
#   exec  <token> <result>   the closure of a ctx.run ran and returned <result>
#   seen  <token> <result>   the handler got <result> back from that ctx.run (after the runtime recorded it)
#   bad   <text>             the handler read something the program did not expect (state, echo)
EXEC, SEEN, BAD = "exec", "seen", "bad"


def side_record(kind: str, *fields: str) -> bytes:
    return ("\t".join((kind, *fields)) + "\n").encode()


@dataclass
class StepReport:
    steps: int = 0  # distinct ctx.run steps whose result a handler used
    executions: int = 0  # closure executions
    reexecuted: int = 0  # steps run more than once before their result was recorded (allowed)
    duplicated: list[str] = field(default_factory=list)  # steps whose recorded result changed (forbidden)
    bad: list[str] = field(default_factory=list)


def analyse_steps(lines: Iterable[str]) -> StepReport:
    """A step may run several times until the runtime records one result; after that every replay must see
    that same result. Two different `seen` results for one token, or a `seen` result no execution
    produced, is a duplicated step result."""
    execs: dict[str, set[str]] = defaultdict(set)
    exec_count: dict[str, int] = defaultdict(int)
    seen: dict[str, set[str]] = defaultdict(set)
    report = StepReport()
    for line in lines:
        parts = line.rstrip("\n").split("\t")
        if parts[0] == EXEC and len(parts) == 3:
            execs[parts[1]].add(parts[2])
            exec_count[parts[1]] += 1
            report.executions += 1
        elif parts[0] == SEEN and len(parts) == 3:
            seen[parts[1]].add(parts[2])
        elif parts[0] == BAD:
            report.bad.append("\t".join(parts[1:]))
    report.steps = len(seen)
    report.reexecuted = sum(1 for n in exec_count.values() if n > 1)
    for token, results in sorted(seen.items()):
        if len(results) > 1 or not results <= execs.get(token, set()):
            report.duplicated.append(f"{token}: seen {sorted(results)}, executed {sorted(execs[token])}")
    return report


def read_side_file(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@dataclass
class SetHistory:
    """Operations of a set workload. An add is `ok` (acknowledged), `fail` (definitely not applied: the
    request never reached the server or was refused before an invocation existed) or `info` (indeterminate:
    a timeout or a 5xx)."""

    ok: dict[int, float] = field(default_factory=dict)  # element -> time of acknowledgement
    fail: set[int] = field(default_factory=set)
    info: set[int] = field(default_factory=set)
    reads: list[tuple[float, frozenset[int]]] = field(default_factory=list)  # (time the read began, seen)


@dataclass
class SetReport:
    acked: int
    lost: list[int]  # acknowledged, absent from the final read
    unexpected: list[int]  # present but never attempted, or definitely failed
    stale_reads: list[str]  # a read that began after an ack and missed the element
    indeterminate_present: int
    indeterminate_absent: int


def check_set(history: SetHistory, final: frozenset[int]) -> SetReport:
    attempted = set(history.ok) | history.fail | history.info
    stale = []
    for began, seen in history.reads:
        missing = sorted(e for e, acked_at in history.ok.items() if acked_at < began and e not in seen)
        if missing:
            stale.append(f"read at {began:.3f} missed {missing[:10]}{'…' if len(missing) > 10 else ''}")
    return SetReport(
        acked=len(history.ok),
        lost=sorted(set(history.ok) - final),
        unexpected=sorted((final - attempted) | (final & history.fail)),
        stale_reads=stale,
        indeterminate_present=len(history.info & final),
        indeterminate_absent=len(history.info - final),
    )
