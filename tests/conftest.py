"""Suite-wide reporting: a run without PostgreSQL says so once, in one line, not only in skip reasons."""

from __future__ import annotations

import pytest

from pyrestate.testing.postgres import find_postgres_bin


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if find_postgres_bin() is None:
        terminalreporter.write_line(
            "PostgreSQL server binaries not found: the PostgreSQL storage tests were skipped "
            "(install Debian's `postgresql` package, or set PYRESTATE_PG_BIN to its bin directory)",
            yellow=True,
        )
