"""CPU time and RSS of process trees from /proc, sampled in a background thread; machine description."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _parents() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            s = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (hypercorn runs a supervisor plus a worker)."""
    kids = _parents()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _ticks_rss(pid: int) -> tuple[int, int]:
    s = Path(f"/proc/{pid}/stat").read_text()
    f = s[s.rindex(")") + 2 :].split()
    # after the comm field: [11] utime, [12] stime, [21] rss in pages
    return int(f[11]) + int(f[12]), int(f[21]) * PAGE_KB


def tree_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds so far, RSS in KiB) summed over the tree of `pid`."""
    ticks = rss = 0
    for p in process_tree(pid):
        try:
            t, r = _ticks_rss(p)
        except (OSError, ValueError, IndexError):
            continue  # exited between listing and reading
        ticks += t
        rss += r
    return ticks / CLK_TCK, rss


def host_ticks() -> tuple[int, int, int]:
    """(total, idle incl. iowait, iowait) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    return sum(vals[:8]), vals[3] + vals[4], vals[4]


@dataclass
class Usage:
    cpu_s: float
    peak_rss_mb: float


class TreeSampler:
    """CPU seconds over a window and peak sampled RSS of named process trees, plus host busy%."""

    def __init__(self, pids: dict[str, int | list[int]], interval: float = 0.2) -> None:
        self.pids = pids
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu0: dict[str, float] = {}
        self._peak: dict[str, int] = dict.fromkeys(pids, 0)
        self._host0 = (0, 0, 0)
        self.wall_s = 0.0
        self._t0 = 0.0

    def _sample(self) -> dict[str, float]:
        cpu = {}
        for name, pids in self.pids.items():
            c, rss = 0.0, 0
            for pid in [pids] if isinstance(pids, int) else pids:  # several trees: one total
                pc, prss = tree_usage(pid)
                c, rss = c + pc, rss + prss
            cpu[name] = c
            self._peak[name] = max(self._peak[name], rss)
        return cpu

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._host0 = host_ticks()
        self._cpu0 = self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> tuple[dict[str, Usage], dict[str, float]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        cpu1 = self._sample()
        self.wall_s = time.monotonic() - self._t0
        h1 = host_ticks()
        total = h1[0] - self._host0[0]
        host = {
            "busy_pct": round(100.0 * (total - (h1[1] - self._host0[1])) / total, 1) if total else 0.0,
            "iowait_pct": round(100.0 * (h1[2] - self._host0[2]) / total, 1) if total else 0.0,
        }
        usage = {
            n: Usage(round(cpu1[n] - self._cpu0[n], 2), round(self._peak[n] / 1024, 1)) for n in self.pids
        }
        return usage, host


def dir_size_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):  # removed while walking
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def _first(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (out.stdout or out.stderr).strip()


def machine_description(data_dir: Path) -> dict[str, str]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    df = _first(["df", "--output=source,fstype", str(data_dir)]).splitlines()
    disk = " ".join(df[-1].split()) if len(df) > 1 else "?"
    load = os.getloadavg()
    return {
        "cpus": f"{os.cpu_count()} online ({model})",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "disk": f"data dirs on {disk}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "wrk": " ".join(_first(["wrk", "-v"]).split()[:3]) if shutil.which("wrk") else "not installed",
    }
