"""Profile the pyrestate server under wrk load: CPU ms per request and py-spy's hottest frames.

    .venv/bin/python -m bench.profile --workloads noop,sleep10ms --conc 64 --duration 8 [--pyspy]

Starts `pyrestate server` and the benchmark service (official SDK by default) on a fresh data dir, runs
each workload (after a short warm-up) while sampling the server's CPU, and with `--pyspy` records the
server with py-spy (`pip install py-spy`), printing the functions with the most own and total samples.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.procstat import tree_usage
from bench.run import WORKLOADS, parse_args, run_load, running


def _top(raw: Path, n: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        samples += c
        frames = stack.split(";")
        own[frames[-1]] += c
        for f in set(frames):
            total[f] += c
    out = [f"{samples} samples", "-- own"]
    out += [f"{100 * c / samples:5.1f}% {f}" for f, c in own.most_common(n)]
    out += ["-- total"]
    out += [f"{100 * c / samples:5.1f}% {f}" for f, c in total.most_common(n)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", default="noop")
    ap.add_argument("--conc", type=int, default=64)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--sdk", default="official")
    ap.add_argument("--server", default="pyrestate", help="pyrestate, or pyrestate-w2 for --workers 2")
    ap.add_argument("--pyspy", action="store_true")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--out", type=Path, default=None, help="keep py-spy output here")
    p = ap.parse_args()
    a = parse_args(["--loadgen", "wrk"])
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        with running(p.server, p.sdk, base / "run") as (server, svc):
            for seq, name in enumerate(p.workloads.split(",")):
                wl = WORKLOADS[name]
                run_load(
                    a,
                    server.ingress_url,
                    wl.path.replace("{p}", f"w{seq}-"),
                    wl.nkeys,
                    wl.body,
                    p.conc,
                    p.warmup,
                    None,
                )
                spy = None
                raw = (p.out or base) / f"{name}.txt"
                if p.pyspy:
                    raw.unlink(missing_ok=True)
                    spy = subprocess.Popen(
                        [
                            "py-spy",
                            "record",
                            "--pid",
                            str(server.pid),
                            "--format",
                            "raw",
                            "--rate",
                            "200",
                            "--function",
                            "--gil",
                            "--output",
                            str(raw),
                            "--nonblocking",
                            *(["--subprocesses"] if p.server != "pyrestate" else []),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        executable=os.path.join(os.path.dirname(sys.executable), "py-spy"),
                    )
                    time.sleep(1.0)
                cpu0, _ = tree_usage(server.pid)
                sdk0, _ = tree_usage(svc.pid)
                t0 = time.monotonic()
                r = run_load(
                    a,
                    server.ingress_url,
                    wl.path.replace("{p}", f"m{seq}-"),
                    wl.nkeys,
                    wl.body,
                    p.conc,
                    p.duration,
                    None,
                )
                wall = time.monotonic() - t0
                cpu1, _ = tree_usage(server.pid)
                sdk1, _ = tree_usage(svc.pid)
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(30)
                acked = r.stats["acked"]
                srv = cpu1 - cpu0
                errors = r.stats["err_status"] + r.stats["err_timeout"]
                print(
                    f"{name} c={p.conc}: {acked / (r.stats['duration_us'] / 1e6):.0f} req/s, "
                    f"p50 {r.stats['p50_us'] / 1000:.2f} ms, server {100 * srv / wall:.0f}% CPU, "
                    f"{1000 * srv / max(1, acked):.2f} ms/req; sdk {100 * (sdk1 - sdk0) / wall:.0f}% CPU, "
                    f"wrk {r.cpu_s / wall * 100:.0f}% CPU, errors {errors}"
                )
                if spy is not None and raw.exists():
                    print(_top(raw, p.top))


if __name__ == "__main__":
    main()
