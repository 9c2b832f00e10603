"""Loaders for the captured exchanges between the official server and the official Python SDK."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
RAW_CAPTURE_FILES = sorted(CAPTURES.glob("sdk-protocol-*-raw.jsonl"))


@dataclass(frozen=True)
class Stream:
    """One direction of one captured `/invoke` exchange, reassembled from its ASGI body events."""

    source: str
    rid: int
    path: str
    direction: str  # "request" (server to SDK) or "response" (SDK to server)
    chunks: tuple[bytes, ...]

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def label(self) -> str:
        return f"{self.source}#{self.rid}:{self.direction}"


def load_streams(path: Path) -> list[Stream]:
    paths: dict[int, str] = {}
    chunks: dict[tuple[int, str], list[bytes]] = defaultdict(list)
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        ev = json.loads(line)
        rid = ev["rid"]
        if ev["ev"] == "request":
            paths[rid] = ev["path"]
        elif ev["ev"] == "recv" and ev.get("type") == "http.request":
            chunks[(rid, "request")].append(bytes.fromhex(ev.get("body_hex", "")))
        elif ev["ev"] == "send" and ev.get("type") == "http.response.body":
            chunks[(rid, "response")].append(bytes.fromhex(ev.get("body_hex", "")))
    streams = []
    for rid, p in sorted(paths.items()):
        if "/invoke/" not in p:
            continue
        for direction in ("request", "response"):
            streams.append(Stream(path.name, rid, p, direction, tuple(chunks[(rid, direction)])))
    return streams
