"""`--storage` / PYRESTATE_STORAGE: validation and the backend it selects."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyrestate.server.config import ConfigError, from_env, from_values
from pyrestate.server.storage.factory import create_storage
from pyrestate.server.storage.postgres import PostgresStorage
from pyrestate.server.storage.sqlite import SqliteStorage


def test_storage_option_defaults_to_sqlite_and_accepts_postgres_urls() -> None:
    assert from_env({}).storage == "sqlite"
    cfg = from_env({"PYRESTATE_STORAGE": "postgresql://u@127.0.0.1:5/db", "PYRESTATE_NODE_ID": "n2"})
    assert (cfg.storage, cfg.node_id) == ("postgresql://u@127.0.0.1:5/db", "n2")
    assert cfg.retry_policy.max_attempts == cfg.retry_max_attempts
    with pytest.raises(ConfigError, match="--storage"):
        from_values({"storage": "mysql://x"})


def test_factory_selects_the_backend(tmp_path: Path) -> None:
    assert isinstance(create_storage("sqlite", sqlite_path=tmp_path / "db", partitions=3), SqliteStorage)
    pg = create_storage("postgres://u@h/db", sqlite_path=tmp_path / "db", partitions=3, node_id="n1")
    assert isinstance(pg, PostgresStorage)
    assert (pg.partitions, pg.node_id) == ((0, 1, 2), "n1")  # a node holds every partition's lease
