"""Fixtures over the captured exchanges between the official server and the official Python SDK."""

from __future__ import annotations

import pytest
from protocol_captures import CAPTURES, RAW_CAPTURE_FILES, Stream, load_streams


@pytest.fixture(scope="session")
def all_streams() -> list[Stream]:
    assert len(RAW_CAPTURE_FILES) >= 2, f"captures missing under {CAPTURES}"
    return [s for f in RAW_CAPTURE_FILES for s in load_streams(f)]
