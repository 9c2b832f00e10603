"""Fault tests: the summary lines of every test are repeated at the end of the run."""

from __future__ import annotations

import pytest
from faults_env import SUMMARIES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARIES:
        terminalreporter.section("durability under faults")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
