"""Flow control: the rule book of concurrency limits per scope and limit key, as restate-server 1.7 offers it
in preview (vqueues).

A rule's pattern has one to three levels (scope, first and second level of the limit key), each an exact
value or `*`. An invocation with scope `s` and limit key `k1/k2` counts at each level it has (`s`,
`s/k1`, `s/k1/k2`); at each level the most specific matching enabled rule gives the limit (an exact value
beats `*`, the scope first), a matching rule without a concurrency means unlimited, and no rule too.

Pure code: the book is a value, changes return a new book; the admin API stores it, partitions read it
from their apply context.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_VALUE_BYTES = 36
_ALLOWED = re.compile(r"[a-zA-Z0-9_.-]*")
WILDCARD = "*"


class PatternError(ValueError):
    pass


def value_error(value: str) -> str | None:
    """Why `value` is not a valid scope or limit-key component (None: it is)."""
    if not value:
        return "value cannot be empty"
    if _ALLOWED.fullmatch(value) is None:
        return "value contains characters outside the allowed set [a-zA-Z0-9_.-]"
    n = len(value.encode())
    if n > MAX_VALUE_BYTES:
        return f"value too long: {n} bytes (max {MAX_VALUE_BYTES})"
    return None


def limit_key_error(limit_key: str) -> str | None:
    """Why a limit key (one or two `/`-separated values) is invalid (None: it is valid)."""
    parts = limit_key.split("/")
    if len(parts) > 2:
        return "too many path components in the given limit-key (max 2)"
    for p in parts:
        why = value_error(p)
        if why is not None:
            return why
    return None


def parse_pattern(text: str) -> str:
    """The normalised pattern (a trailing `/` dropped); raises PatternError with restate's reason."""
    if text.endswith("/"):
        text = text[:-1]
    if not text:
        raise PatternError("pattern cannot be empty")
    parts = text.split("/")
    if len(parts) > 3:
        raise PatternError("too many path components (max 3)")
    for p in parts:
        if p != WILDCARD:
            why = value_error(p)
            if why is not None:
                raise PatternError(f"invalid component: {why}")
    return text


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: str
    concurrency: int | None
    description: str | None
    disabled: bool
    version: int
    last_modified_ms: int

    def to_json(self) -> dict[str, Any]:
        """The admin API's RuleResponse."""
        out: dict[str, Any] = {
            "pattern": self.pattern,
            "limits": {} if self.concurrency is None else {"concurrency": self.concurrency},
        }
        if self.description is not None:
            out["description"] = self.description
        out["disabled"] = self.disabled
        out["version"] = self.version
        out["last_modified_millis_since_epoch"] = self.last_modified_ms
        return out


Precondition = (
    tuple[Literal["none"], None] | tuple[Literal["matches"], int] | tuple[Literal["does_not_exist"], None]
)


@dataclass(frozen=True, slots=True)
class Upsert:
    pattern: str
    concurrency: int | None = None
    description: str | None = None
    disabled: bool = False
    precondition: Precondition = ("none", None)


@dataclass(frozen=True, slots=True)
class Delete:
    pattern: str
    expected_version: int | None = None


class PreconditionFailed(Exception):
    def __init__(self, kind: str, pattern: str, actual: int | None) -> None:
        have = "None" if actual is None else f"Some(v{actual})"
        super().__init__(f"rule precondition {kind} for pattern {pattern} failed (actual version: {have})")
        self.kind, self.pattern, self.actual = kind, pattern, actual

    def __reduce__(self) -> tuple[type[PreconditionFailed], tuple[str, str, int | None]]:
        # Raised on worker 0 and answered by the worker the request reached: it crosses a process.
        return PreconditionFailed, (self.kind, self.pattern, self.actual)


def _check(kind: str, expected: int | None, pattern: str, current: Rule | None) -> None:
    actual = None if current is None else current.version
    if kind == "matches" and actual != expected:
        raise PreconditionFailed(f"Matches(v{expected})", pattern, actual)
    if kind == "does_not_exist" and current is not None:
        raise PreconditionFailed("DoesNotExist", pattern, actual)


@dataclass(frozen=True)
class RuleBook:
    version: int = 0
    rules: dict[str, Rule] = field(default_factory=dict)

    # ------------------------------------------------------------------ changes

    def upsert(self, entries: Sequence[Upsert], now_ms: int) -> tuple[RuleBook, list[Rule]]:
        """Apply a batch atomically (raises PreconditionFailed, changing nothing). The book's version is
        bumped once when anything changed; a new rule takes it, a rule whose limits or disabled flag change
        bumps its own version."""
        rules = dict(self.rules)
        new_version = self.version + 1
        changed = False
        for e in entries:
            current = rules.get(e.pattern)
            _check(e.precondition[0], e.precondition[1], e.pattern, current)
            if current is None:
                rules[e.pattern] = Rule(
                    e.pattern, e.concurrency, e.description, e.disabled, new_version, now_ms
                )
                changed = True
            elif (current.concurrency, current.disabled) != (e.concurrency, e.disabled):
                rules[e.pattern] = Rule(
                    e.pattern, e.concurrency, e.description, e.disabled, current.version + 1, now_ms
                )
                changed = True
            elif current.description != e.description:
                rules[e.pattern] = dataclasses.replace(current, description=e.description)
                changed = True
        book = RuleBook(new_version, rules) if changed else self
        return book, [book.rules[e.pattern] for e in entries]

    def delete(self, entries: Sequence[Delete]) -> tuple[RuleBook, list[str]]:
        rules = dict(self.rules)
        removed: list[str] = []
        for e in entries:
            current = rules.get(e.pattern)
            if e.expected_version is not None:
                _check("matches", e.expected_version, e.pattern, current)
            if current is not None:
                del rules[e.pattern]
                removed.append(e.pattern)
        if not removed:
            return self, removed
        return RuleBook(self.version + 1, rules), removed

    # ------------------------------------------------------------------ lookup

    def limits_for(self, scope: str, limit_key: str | None) -> list[tuple[tuple[str, ...], int]]:
        """(counter, limit) for every level of (scope, limit key) that a rule limits; a counter is the
        scope followed by the limit key's levels down to that level."""
        return [(counter, limit) for counter, limit, _ in self.limiting_rules(scope, limit_key)]

    def limiting_rules(self, scope: str, limit_key: str | None) -> list[tuple[tuple[str, ...], int, str]]:
        """`limits_for`, with the pattern of the rule that sets each limit."""
        levels = [scope, *(limit_key.split("/") if limit_key else [])][:3]
        best: dict[int, tuple[int, Rule]] = {}
        for rule in self.rules.values():
            if rule.disabled:
                continue
            parts = rule.pattern.split("/")
            depth = len(parts)
            if depth > len(levels):
                continue
            rank = 0
            for i, p in enumerate(parts):
                if p == WILDCARD:
                    continue
                if p != levels[i]:
                    break
                rank |= 1 << (depth - 1 - i)
            else:
                held = best.get(depth)
                if held is None or rank > held[0]:
                    best[depth] = (rank, rule)
        out = []
        for depth in sorted(best):
            rule = best[depth][1]
            if rule.concurrency is not None:
                out.append((tuple(levels[:depth]), rule.concurrency, rule.pattern))
        return out

    def sorted_rules(self) -> list[Rule]:
        return [self.rules[p] for p in sorted(self.rules)]

    # ------------------------------------------------------------------ storage

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "version": self.version,
                "rules": [
                    [r.pattern, r.concurrency, r.description, r.disabled, r.version, r.last_modified_ms]
                    for r in self.sorted_rules()
                ],
            },
            separators=(",", ":"),
        ).encode()

    @staticmethod
    def from_bytes(raw: bytes | None) -> RuleBook:
        if raw is None:
            return RuleBook()
        doc = json.loads(raw)
        rules = {r[0]: Rule(r[0], r[1], r[2], bool(r[3]), int(r[4]), int(r[5])) for r in doc["rules"]}
        return RuleBook(int(doc["version"]), rules)


def counter_matches(counter: tuple[str, ...], limit_key: str | None) -> bool:
    """Whether a running invocation of the counter's scope with `limit_key` counts at that counter."""
    levels = limit_key.split("/") if limit_key else []
    want = counter[1:]
    return len(levels) >= len(want) and tuple(levels[: len(want)]) == want


def fits(book: RuleBook, scope: str, limit_key: str | None, running: Iterable[str | None]) -> bool:
    """Whether one more invocation of (scope, limit key) may run beside the running ones of its scope
    (their limit keys)."""
    limits = book.limits_for(scope, limit_key)
    if not limits:
        return True
    keys = list(running)
    return all(sum(1 for k in keys if counter_matches(c, k)) < n for c, n in limits)


@dataclass(frozen=True, slots=True)
class CounterUsage:
    """One limited counter in use (a row of `sys_user_limits`): how many of its invocations run, its
    limit and the rule that sets it, and how many wait because this counter is full."""

    counter: tuple[str, ...]  # scope, then the limit key's levels down to this one
    usage: int
    limit: int
    rule_pattern: str
    waiters: int

    @property
    def level(self) -> str:
        return ("Scope", "Level1", "Level2")[len(self.counter) - 1]


def counter_usage(
    book: RuleBook, scope: str, running: Iterable[str | None], waiting: Iterable[str | None]
) -> list[CounterUsage]:
    """The limited counters of `scope` that have running or waiting invocations (their limit keys). A
    waiting invocation is counted at the most specific full counter on its path (restate-server 1.7 showed
    one that waited on a full `s/a` under a full scope at `s/a`)."""
    running = list(running)
    usage: dict[tuple[str, ...], tuple[int, str]] = {}
    for key in running:
        for counter, limit, pattern in book.limiting_rules(scope, key):
            usage.setdefault(counter, (limit, pattern))
    waiters: dict[tuple[str, ...], int] = {}
    for key in waiting:
        for counter, limit, pattern in reversed(book.limiting_rules(scope, key)):
            if sum(1 for k in running if counter_matches(counter, k)) >= limit:
                usage.setdefault(counter, (limit, pattern))
                waiters[counter] = waiters.get(counter, 0) + 1
                break
    return [
        CounterUsage(
            counter,
            sum(1 for k in running if counter_matches(counter, k)),
            limit,
            pattern,
            waiters.get(counter, 0),
        )
        for counter, (limit, pattern) in sorted(usage.items(), key=lambda item: (len(item[0]), item[0]))
    ]
