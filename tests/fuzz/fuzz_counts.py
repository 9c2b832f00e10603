"""Counts of fuzzed inputs per target, summed over the session and printed at its end."""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()


def count(target: str, n: int = 1) -> None:
    COUNTS[target] += n


def summary() -> str:
    total = sum(COUNTS.values())
    parts = ", ".join(f"{name}={n}" for name, n in sorted(COUNTS.items()))
    return f"inputs fuzzed: {total} ({parts})"
