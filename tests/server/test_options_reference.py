"""docs/operations.md lists every server setting exactly as `pyrestate server` knows it."""

from __future__ import annotations

from pathlib import Path

from pyrestate.server.config import options_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
BEGIN, END = "<!-- options:begin -->\n", "<!-- options:end -->"


def test_the_options_reference_is_current() -> None:
    text = DOC.read_text()
    documented = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert documented == options_reference(), (
        "docs/operations.md is out of date: regenerate it with "
        "`.venv/bin/python -c 'from pyrestate.server.config import options_reference as o; print(o())'`"
    )
