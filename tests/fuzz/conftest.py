"""Bad-input tests: the helpers live in uniquely named modules (fuzz_counts, fuzz_support)."""

from __future__ import annotations

from typing import Any

from fuzz_counts import COUNTS, summary


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if COUNTS:
        terminalreporter.write_line(summary())
