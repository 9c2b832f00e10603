"""Soak: 100,000 invocations through one server; RSS and data-dir size before and after retention cleanup.

    .venv/bin/python -m bench.soak                      # pyrestate server, official SDK, 4 rounds x 25,000
    .venv/bin/python -m bench.soak --total 2000 --server official --retention 5s   # a dry run

The invocations are split into rounds. Each round drives `Noop.call` (sync) with the asyncio client, samples
RSS and the data-dir size every batch, then waits until retention has removed that round's completed
invocations (a few /send invocations made at the end of the round are polled until their output is gone,
404) and samples again. Flat means the after-cleanup figures of the last round are close to the first
round's: completed invocations leave nothing behind. Writes bench/SOAK.md (and soak.json next to it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import run_load, run_loop
from bench.procstat import dir_size_bytes, machine_description, tree_usage
from bench.servers import BENCH_DIR, Server, Unavailable, register, start_server, start_service
from pyrestate.server.durations import parse_duration_ms


def sample(server: Server, sdk_pid: int, label: str, done: int, rps: float | None = None) -> dict[str, Any]:
    row = {
        "label": label,
        "invocations": done,
        "server_rss_mb": round(tree_usage(server.pid)[1] / 1024, 1),
        "sdk_rss_mb": round(tree_usage(sdk_pid)[1] / 1024, 1),
        "data_dir_mb": round(dir_size_bytes(server.data_dir) / 1e6, 2),
        "rps": rps,
    }
    print(
        f"  {label:28s} invocations={done:>7d} server RSS={row['server_rss_mb']} MB "
        f"SDK RSS={row['sdk_rss_mb']} MB data dir={row['data_dir_mb']} MB"
        + (f" ({rps:.0f} req/s)" if rps else ""),
        flush=True,
    )
    return row


def send_markers(ingress: str, n: int = 8) -> list[str]:
    ids = []
    with httpx.Client(timeout=30.0) as c:
        for _ in range(n):
            r = c.post(f"{ingress}/Noop/call/send", json="marker")
            r.raise_for_status()
            ids.append(r.json()["invocationId"])
    return ids


def wait_cleaned(ingress: str, ids: list[str], timeout: float) -> float | None:
    """Seconds until the output of every marker is gone (404), or None at the timeout."""
    t0 = time.monotonic()
    with httpx.Client(timeout=30.0) as c:
        while time.monotonic() - t0 < timeout:
            codes = [c.get(f"{ingress}/restate/invocation/{i}/output").status_code for i in ids]
            if all(code == 404 for code in codes):
                return time.monotonic() - t0
            time.sleep(1.0)
    return None


def set_retention(server: Server, retention: str) -> None:
    """The official server takes retention per service (pyrestate gets it as server flags)."""
    with httpx.Client(timeout=30.0) as c:
        for svc in ("Noop",):
            c.patch(
                f"{server.admin_url}/services/{svc}",
                json={"journal_retention": retention, "idempotency_retention": retention},
            ).raise_for_status()


def render(doc: dict[str, Any]) -> str:
    lines = ["# Soak: invocations through one server, before and after retention cleanup", ""]
    lines += [f"- **{k}**: {v}" for k, v in doc["machine"].items()]
    lines += [f"- **{k}**: {v}" for k, v in doc["settings"].items()]
    lines += [
        "",
        "| sample | invocations | server RSS MB | SDK RSS MB | data dir MB | req/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in doc["samples"]:
        rps = f"{r['rps']:.0f}" if r["rps"] else ""
        lines.append(
            f"| {r['label']} | {r['invocations']} | {r['server_rss_mb']} | {r['sdk_rss_mb']} | "
            f"{r['data_dir_mb']} | {rps} |"
        )
    lines += ["", doc.get("verdict", ""), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--server", choices=("pyrestate", "official"), default="pyrestate")
    ap.add_argument("--sdk", choices=("official", "pyrestate"), default="official")
    ap.add_argument("--total", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--conc", type=int, default=32)
    ap.add_argument("--retention", default="30s", help="journal/idempotency retention given to the server")
    ap.add_argument("--cleanup-timeout", type=float, default=900.0)
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "SOAK.md")
    a = ap.parse_args(argv)

    run_dir = Path(tempfile.mkdtemp(prefix="pyrestate-soak-"))
    doc: dict[str, Any] = {
        "machine": machine_description(run_dir),
        "settings": {
            "server": a.server,
            "sdk": a.sdk,
            "invocations": a.total,
            "rounds": a.rounds,
            "concurrency": a.conc,
            "retention": a.retention,
            "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
        },
        "samples": [],
    }
    extra: list[str] = []
    if a.server == "pyrestate":
        extra = ["--journal-retention", a.retention, "--idempotency-retention", a.retention]
    try:
        server = start_server(
            a.server,
            run_dir / "data",
            run_dir,
            extra_args=extra,
            extra_env={"RESTATE_WORKER__CLEANUP_INTERVAL": "5s"},
        )
    except Unavailable as e:
        print(f"soak skipped: {e}", file=sys.stderr)
        shutil.rmtree(run_dir, ignore_errors=True)
        return 2
    svc = None
    try:
        svc = start_service(a.sdk, run_dir)
        register(server, svc)
        if a.server == "official":
            set_retention(server, a.retention)
        cleanup_s = parse_duration_ms(a.retention) / 1000
        samples = doc["samples"]
        samples.append(sample(server, svc.pid, "start", 0))
        done = 0
        per_round = a.total // a.rounds
        for rnd in range(1, a.rounds + 1):
            target = per_round if rnd < a.rounds else a.total - done
            left = target
            while left > 0:
                n = min(a.batch, left)
                res = run_loop(run_load(server.ingress_url, "/Noop/call", 0, '"soak"', a.conc, total=n))
                if res.acked != n:
                    print(f"  {n - res.acked} of {n} calls failed", flush=True)
                done += res.acked
                left -= n
                samples.append(
                    sample(server, svc.pid, f"round {rnd}", done, res.acked / (res.duration_us / 1e6))
                )
            samples.append(sample(server, svc.pid, f"round {rnd} before cleanup", done))
            # Sent after the round's calls: once these are gone, so is everything the round left.
            markers = send_markers(server.ingress_url)
            waited = wait_cleaned(server.ingress_url, markers, max(a.cleanup_timeout, 3 * cleanup_s))
            if waited is None:
                print("  retention cleanup did not remove the markers in time", flush=True)
            samples.append(sample(server, svc.pid, f"round {rnd} after cleanup", done))
        after = [s for s in samples if s["label"].endswith("after cleanup")]
        first, last = after[0], after[-1]
        doc["verdict"] = (
            f"After cleanup, round 1 → round {a.rounds}: server RSS {first['server_rss_mb']} → "
            f"{last['server_rss_mb']} MB, data dir {first['data_dir_mb']} → {last['data_dir_mb']} MB."
        )
        print(doc["verdict"], flush=True)
    finally:
        if svc is not None:
            svc.stop()
        server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        doc["settings"]["finished"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
        a.out.write_text(render(doc))
        a.out.with_name("soak.json").write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
