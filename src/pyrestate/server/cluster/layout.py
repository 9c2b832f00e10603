"""Ownership of partitions: contiguous ranges of partitions, one per worker, each with its own database.

The layout is written into the data dir when it is created and checked at every start: the files hold the
state of fixed partition ranges, so starting the same data dir with another number of workers (or
partitions) is refused instead of silently losing invocations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pyrestate.server.config import ConfigError

LAYOUT_FILE = "layout.json"
SINGLE_PROCESS_DB = "pyrestate.sqlite3"  # EngineConfig.database_path of a one-process server


class LayoutError(ConfigError):
    pass


@dataclass(frozen=True, slots=True)
class Layout:
    partitions: int
    workers: int

    def range_of(self, worker: int) -> range:
        return range(worker * self.partitions // self.workers, (worker + 1) * self.partitions // self.workers)

    def owners(self) -> list[int]:
        """Owner of every partition, indexed by partition."""
        out: list[int] = []
        for w in range(self.workers):
            out.extend([w] * len(self.range_of(w)))
        return out

    @staticmethod
    def worker_dir(data_dir: Path, worker: int) -> Path:
        return Path(data_dir) / f"worker-{worker}"

    def to_json(self) -> str:
        ranges = [[self.range_of(w).start, self.range_of(w).stop] for w in range(self.workers)]
        doc = {"partitions": self.partitions, "workers": self.workers, "ranges": ranges}
        return json.dumps(doc, indent=1) + "\n"


def check_single_process(data_dir: Path) -> None:
    """A one-process server refuses a data dir laid out for several workers."""
    path = Path(data_dir) / LAYOUT_FILE
    if path.exists():
        doc = json.loads(path.read_text())
        if doc.get("workers", 1) != 1:
            raise LayoutError(
                f"{data_dir} was created with --workers {doc['workers']} (see {path}); "
                f"start it with --workers {doc['workers']}, or use another data dir"
            )


def load_or_create(data_dir: Path, partitions: int, workers: int) -> Layout:
    if workers < 2:
        raise LayoutError("a multi-process layout needs at least 2 workers")
    if workers > partitions:
        raise LayoutError(
            f"--workers {workers} needs as many partitions at least (--partitions {partitions})"
        )
    data_dir = Path(data_dir)
    path = data_dir / LAYOUT_FILE
    if path.exists():
        doc = json.loads(path.read_text())
        found = Layout(int(doc["partitions"]), int(doc["workers"]))
        if found != Layout(partitions, workers):
            raise LayoutError(
                f"{data_dir} was created with --workers {found.workers} --partitions {found.partitions} "
                f"(see {path}); start it with those, or use another data dir"
            )
        return found
    if (data_dir / SINGLE_PROCESS_DB).exists():
        raise LayoutError(
            f"{data_dir} holds the data of a one-process server; start it without --workers, "
            "or use another data dir"
        )
    layout = Layout(partitions, workers)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(layout.to_json())
    tmp.replace(path)
    return layout
