from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from store import Fixture, make_store

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    return make_store(tmp_path_factory.mktemp("query") / "store.sqlite")


@pytest.fixture(scope="session")
def captures() -> Path:
    assert CAPTURES.is_dir(), f"captures missing at {CAPTURES}"
    return CAPTURES
