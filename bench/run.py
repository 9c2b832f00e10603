"""Benchmark pyrestate against the official restate-server: same service, same SDKs, same load, one run.

    .venv/bin/python -m bench.run            # everything, ~3 s warm-up + 15 s measured per point
    .venv/bin/python -m bench.run --quick    # ~2 s per point, a smoke run

For each SDK (official restate-sdk, pyrestate.sdk) and each server (official, pyrestate), in that order so
that the two servers of one SDK are measured back to back: start the server on a fresh data dir and free
loopback ports, start bench/services.py under hypercorn (h2c), register it, run every (workload,
concurrency) point, stop both by PID. bench/RESULTS.md and bench/results.json are rewritten after every
point, so an interrupted run still leaves a report. A server or SDK that cannot start is skipped with the
reason in the report. Every option also reads an environment variable (BENCH_<OPTION>).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.drain import DrainProbe, choose_probe
from bench.procstat import TreeSampler, dir_size_bytes, machine_description
from bench.servers import (
    BENCH_DIR,
    SDKS,
    SERVERS,
    Server,
    ServiceProcess,
    Unavailable,
    register,
    start_server,
    start_service,
)


@dataclass(frozen=True)
class Workload:
    name: str
    label: str
    path: str  # "{k}" becomes k0..k<nkeys-1>; "{p}" a prefix unique to the run phase (fresh counters)
    nkeys: int = 0
    body: str = '{"hello":"world"}'
    send: bool = False
    counter: bool = False


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("noop", "(a) Noop.call", "/Noop/call"),
        Workload("steps3", "(b) Steps.three (3x ctx.run)", "/Steps/three"),
        Workload(
            "counter100",
            "(c) Counter.add, 100 keys",
            "/Counter/{p}{k}/add",
            nkeys=100,
            body="1",
            counter=True,
        ),
        Workload(
            "counter1hot",
            "(c) Counter.add, 1 hot key",
            "/Counter/{p}{k}/add",
            nkeys=1,
            body="1",
            counter=True,
        ),
        Workload("send", "(d) Noop.call/send (accept rate)", "/Noop/call/send", send=True),
        Workload("sleep10ms", "(e) Sleeper.nap (ctx.sleep 10 ms)", "/Sleeper/nap"),
    )
}


def _env(name: str, default: str) -> str:
    return os.environ.get(f"BENCH_{name.upper()}", default)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--servers", default=_env("servers", ",".join(SERVERS)), help="official,pyrestate")
    ap.add_argument("--sdks", default=_env("sdks", ",".join(SDKS)), help="official,pyrestate")
    ap.add_argument("--workloads", default=_env("workloads", ",".join(WORKLOADS)), help=",".join(WORKLOADS))
    ap.add_argument("--conc", default=_env("conc", "1,16,64"), help="concurrency levels")
    ap.add_argument("--duration", type=int, default=int(_env("duration", "15")), help="measured s/point")
    ap.add_argument("--warmup", type=int, default=int(_env("warmup", "3")), help="discarded s/point")
    ap.add_argument(
        "--quick",
        action="store_true",
        default=_env("quick", "") not in ("", "0"),
        help="1 s warm-up + 1 s measured per point (smoke run; figures are not meaningful)",
    )
    ap.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "asyncio"),
        default=_env("loadgen", "auto"),
        help="auto: wrk when installed, else the asyncio client",
    )
    ap.add_argument("--wrk-threads", type=int, default=int(_env("wrk_threads", "1")))
    ap.add_argument("--timeout", type=int, default=int(_env("timeout", "30")), help="request timeout s")
    ap.add_argument(
        "--drain-probe", choices=("auto", "query", "outputs"), default=_env("drain_probe", "auto")
    )
    ap.add_argument("--drain-timeout", type=float, default=float(_env("drain_timeout", "600")))
    ap.add_argument("--drain-poll", type=float, default=float(_env("drain_poll", "0.25")))
    ap.add_argument("--out", type=Path, default=Path(_env("out", str(BENCH_DIR / "RESULTS.md"))))
    ap.add_argument("--run-dir", type=Path, default=None, help="data dirs and logs (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the run dir (data dirs, logs, id files)")
    a = ap.parse_args(argv)
    if a.quick:
        a.warmup, a.duration = min(a.warmup, 1), min(a.duration, 1)
    a.servers = [s for s in a.servers.split(",") if s]
    a.sdks = [s for s in a.sdks.split(",") if s]
    a.workloads = [w for w in a.workloads.split(",") if w]
    a.conc = [int(c) for c in a.conc.split(",") if c]
    for name, values, allowed in (
        ("server", a.servers, SERVERS),
        ("sdk", a.sdks, SDKS),
        ("workload", a.workloads, tuple(WORKLOADS)),
    ):
        bad = [v for v in values if v not in allowed]
        if bad:
            ap.error(f"unknown {name} {bad}; choose from {','.join(allowed)}")
    if a.loadgen == "auto":
        a.loadgen = "wrk" if shutil.which("wrk") else "asyncio"
    elif a.loadgen == "wrk" and not shutil.which("wrk"):
        ap.error("wrk is not installed: `bench/setup.sh` (apt-get install -y wrk) or --loadgen asyncio")
    return a


# ----------------------------------------------------------------------------------------- load generator


@dataclass
class LoadRun:
    stats: dict[str, Any]
    cpu_s: float
    peak_rss_mb: float
    ids: list[str]


def run_load(
    a: argparse.Namespace,
    ingress: str,
    path: str,
    nkeys: int,
    body: str,
    conc: int,
    duration: int,
    id_base: Path | None,
) -> LoadRun:
    """One load-generator process; its CPU and peak RSS come from wait4's rusage."""
    if a.loadgen == "wrk":
        argv = [
            "wrk",
            "-t",
            str(min(a.wrk_threads, conc)),
            "-c",
            str(conc),
            "-d",
            f"{duration}s",
            "--timeout",
            f"{a.timeout}s",
            "-s",
            str(BENCH_DIR / "post.lua"),
            ingress,
            "--",
            path,
            str(nkeys),
            body,
            str(id_base or ""),
        ]
    else:
        argv = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--url",
            ingress,
            "--path",
            path,
            "--nkeys",
            str(nkeys),
            "--body",
            body,
            "--conc",
            str(conc),
            "--duration",
            str(duration),
            "--timeout",
            str(a.timeout),
        ]
        if id_base is not None:
            argv += ["--idfile", f"{id_base}.0"]
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=BENCH_DIR.parent)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"load generator gave no result (exit {p.returncode}):\n{text[-2000:]}")
    ids: list[str] = []
    if id_base is not None:
        for f in sorted(glob.glob(f"{id_base}.*")):
            ids += Path(f).read_text().split()
    return LoadRun(
        json.loads(line[8:]), round(ru.ru_utime + ru.ru_stime, 2), round(ru.ru_maxrss / 1024, 1), ids
    )


# ----------------------------------------------------------------------------------------- one point


def counter_total(ingress: str, prefix: str, nkeys: int) -> int:
    with httpx.Client(timeout=30.0) as c:
        total = 0
        for i in range(nkeys):
            r = c.post(f"{ingress}/Counter/{prefix}k{i}/get")
            r.raise_for_status()
            total += int(r.json())
        return total


def verify_counter(ingress: str, prefix: str, nkeys: int, acked: int, sent: int) -> dict[str, Any]:
    """The final sum of the counters vs. acknowledged adds.

    The load generator cuts its connections at the end of the window; adds in flight then may still be
    applied, so the sum must lie in [acknowledged, sent]. Read until the value stops moving.
    """
    deadline = time.monotonic() + 30.0
    prev = -1
    total = counter_total(ingress, prefix, nkeys)
    while time.monotonic() < deadline and (total != prev or total < acked):
        time.sleep(0.5)
        prev, total = total, counter_total(ingress, prefix, nkeys)
    ok = acked <= total <= sent
    verdict = ("equal" if total == acked else f"+{total - acked} cut in flight") if ok else "MISMATCH"
    return {"keys": nkeys, "acked": acked, "sent": sent, "final": total, "ok": ok, "verdict": verdict}


def measure_point(
    a: argparse.Namespace,
    server: Server,
    svc: ServiceProcess,
    probe: DrainProbe,
    wl: Workload,
    conc: int,
    scratch: Path,
    seq: int,
) -> dict[str, Any]:
    ingress = server.ingress_url
    if a.warmup > 0:
        warm_base = scratch / f"ids-warm-{seq}" if wl.send else None
        warm = run_load(
            a, ingress, wl.path.replace("{p}", f"w{seq}-"), wl.nkeys, wl.body, conc, a.warmup, warm_base
        )
        if wl.send:
            probe.wait_drained(warm.ids, time.monotonic(), a.drain_timeout, a.drain_poll)
    prefix = f"m{seq}-"
    sampler = TreeSampler({"server": server.pids, "sdk": svc.pid})
    sampler.start()
    run = run_load(
        a,
        ingress,
        wl.path.replace("{p}", prefix),
        wl.nkeys,
        wl.body,
        conc,
        a.duration,
        scratch / f"ids-{seq}" if wl.send else None,
    )
    t_end = time.monotonic()
    usage, host = sampler.stop()
    s = run.stats
    secs = s["duration_us"] / 1e6
    errors = s["err_connect"] + s["err_read"] + s["err_write"] + s["err_status"] + s["err_timeout"]
    res: dict[str, Any] = {
        "server": server.kind,
        "sdk": svc.sdk,
        "workload": wl.name,
        "conc": conc,
        "requests": s["requests"],
        "acked": s["acked"],
        "sent": s["sent"],
        "rps": round(s["acked"] / secs, 1) if secs else 0.0,
        "p50_ms": s["p50_us"] / 1000,
        "p90_ms": s["p90_us"] / 1000,
        "p99_ms": s["p99_us"] / 1000,
        "max_ms": s["max_us"] / 1000,
        "errors": errors,
        "errors_detail": {k: v for k, v in s.items() if k.startswith("err_") and v},
        "window_s": round(sampler.wall_s, 2),
        "host": host,
        "usage": {
            "server": usage["server"].__dict__,
            "sdk": usage["sdk"].__dict__,
            "loadgen": {"cpu_s": run.cpu_s, "peak_rss_mb": run.peak_rss_mb},
        },
    }
    for name, u in res["usage"].items():
        u["cpu_pct"] = round(100.0 * u["cpu_s"] / sampler.wall_s, 1) if sampler.wall_s else 0.0
        u["ms_per_req"] = round(1000.0 * u["cpu_s"] / s["acked"], 3) if s["acked"] else None
        del name
    if wl.send:
        d = probe.wait_drained(run.ids, t_end, a.drain_timeout, a.drain_poll)
        res["drain"] = {
            "probe": probe.name,
            "ids": len(run.ids),
            "backlog_at_end": d.backlog_at_end,
            "backlog_exact": d.backlog_exact,
            "seconds": None if d.seconds is None else round(d.seconds, 2),
            "completed_rps": round(s["acked"] / (secs + d.seconds), 1) if d.seconds is not None else None,
        }
        if getattr(probe, "disagreements", 0):
            res["drain"]["probe_disagreed"] = True  # the SQL count said 0 while outputs were pending
    if wl.counter:
        res["counter"] = verify_counter(ingress, prefix, wl.nkeys, s["acked"], s["sent"])
    return res


# ----------------------------------------------------------------------------------------- orchestration


@contextlib.contextmanager
def running(server_kind: str, sdk: str, base: Path) -> Iterator[tuple[Server, ServiceProcess]]:
    shutil.rmtree(base, ignore_errors=True)  # a fresh data dir, also when --run-dir is reused
    base.mkdir(parents=True)
    server = start_server(server_kind, base / "data", base)
    svc: ServiceProcess | None = None
    try:
        svc = start_service(sdk, base)
        register(server, svc)
        yield server, svc
    finally:
        if svc is not None:
            svc.stop()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    run_dir = a.run_dir or Path(tempfile.mkdtemp(prefix="pyrestate-bench-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
        "machine": machine_description(run_dir),
        "settings": {
            "servers": a.servers,
            "sdks": a.sdks,
            "workloads": a.workloads,
            "conc": a.conc,
            "warmup_s": a.warmup,
            "duration_s": a.duration,
            "quick": a.quick,
            "loadgen": a.loadgen,
            "wrk_threads": a.wrk_threads,
            "timeout_s": a.timeout,
            "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *(argv or sys.argv[1:])]),
        },
        "runs": [],
        "skipped": [],
        "failed": [],
        "results": [],
    }
    workloads = [WORKLOADS[w] for w in a.workloads]

    def save() -> None:
        a.out.with_name("results.json").write_text(json.dumps(doc, indent=1))
        a.out.write_text(report.render(doc, WORKLOADS))

    print(
        f"run dir {run_dir}; load generator {a.loadgen}; {a.warmup}s warm-up + {a.duration}s per point",
        flush=True,
    )
    try:
        for sdk in a.sdks:
            for kind in a.servers:
                base = run_dir / f"{kind}-server-{sdk}-sdk"
                t0 = time.monotonic()
                try:
                    with running(kind, sdk, base) as (server, svc):
                        probe = choose_probe(a.drain_probe, server.admin_url, server.ingress_url)
                        info = {
                            "server": kind,
                            "sdk": sdk,
                            "server_version": server.version,
                            "server_command": server.command,
                            "durability": server.durability,
                            "sdk_version": svc.version,
                            "sdk_command": svc.command,
                            "drain_probe": probe.describe(),
                            "logs": str(base),
                        }
                        doc["runs"].append(info)
                        print(
                            f"== {kind} server, {sdk} SDK: {server.version}; drain probe {probe.name}",
                            flush=True,
                        )
                        seq = 0
                        for wl in workloads:
                            for conc in a.conc:
                                seq += 1
                                try:
                                    r = measure_point(a, server, svc, probe, wl, conc, base, seq)
                                except (RuntimeError, OSError, httpx.HTTPError) as e:
                                    # one broken point (a server bug, a crash) must not lose the others
                                    msg = f"{type(e).__name__}: {e}"
                                    doc["failed"].append(
                                        {
                                            "server": kind,
                                            "sdk": sdk,
                                            "workload": wl.name,
                                            "conc": conc,
                                            "error": msg[:2000],
                                        }
                                    )
                                    print(f"  {wl.name} c={conc} FAILED: {msg[:500]}", flush=True)
                                    if not server.process.is_running():
                                        raise Unavailable(
                                            f"{kind} server died\n" + server.process.log_tail(30)
                                        ) from None
                                    continue
                                doc["results"].append(r)
                                print("  " + report.one_line(r), flush=True)
                                save()
                        info["data_dir_mb"] = round(dir_size_bytes(server.data_dir) / 1e6, 1)
                        info["seconds"] = round(time.monotonic() - t0, 1)
                except Unavailable as e:
                    reason = str(e)
                    print(f"== SKIP {kind} server with {sdk} SDK: {reason.splitlines()[0]}", flush=True)
                    doc["skipped"].append({"server": kind, "sdk": sdk, "reason": reason})
                save()
    finally:
        doc["finished"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
        save()
        if not a.keep and a.run_dir is None:
            shutil.rmtree(run_dir, ignore_errors=True)
    print(f"wrote {a.out}", flush=True)
    return 0 if doc["results"] and not doc["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
