"""Markdown for bench/RESULTS.md from the results document (pure: no IO)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class _Labelled(Protocol):
    @property
    def label(self) -> str: ...


def _f(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _ratio(py: float | None, off: float | None) -> str:
    if py is None or off is None or off == 0:
        return "-"
    return f"{py / off:.2f}x"


def _errors(r: Mapping[str, Any]) -> str:
    # a point where nothing came back has no latency at all: say so instead of printing zeros
    return f"{r['errors']} **no response**" if r["acked"] == 0 else str(r["errors"])


def one_line(r: Mapping[str, Any]) -> str:
    u = r["usage"]
    line = (
        f"{r['workload']:11s} c={r['conc']:<3d} {r['rps']:8.1f} req/s p50={r['p50_ms']:.2f} "
        f"p99={r['p99_ms']:.2f} ms err={_errors(r)} cpu s: server={u['server']['cpu_s']} "
        f"sdk={u['sdk']['cpu_s']} loadgen={u['loadgen']['cpu_s']} host={r['host']['busy_pct']}%"
    )
    if "drain" in r:
        d = r["drain"]
        line += f" backlog={d['backlog_at_end']} drain={d['seconds']}s"
    if "counter" in r:
        c = r["counter"]
        line += f" counter final={c['final']} acked={c['acked']} ({c['verdict']})"
    return line


def render(doc: Mapping[str, Any], workloads: Mapping[str, _Labelled]) -> str:
    st = doc["settings"]
    lines = ["# Benchmark: pyrestate vs. the official restate-server", ""]
    if st["quick"]:
        lines += [
            "> **Quick (smoke) run**: 1 s per point; these figures validate the harness, they are not "
            "measurements.",
            "",
        ]
    lines += [f"- **date**: {doc['started']} - {doc.get('finished', 'running')} (UTC)"]
    lines += [f"- **{k}**: {v}" for k, v in doc["machine"].items()]
    lines += [
        "- **durability**: pyrestate - SQLite `synchronous=FULL` in WAL mode (its default): an acknowledged "
        "request is on disk; official restate-server - its defaults (replicated loglet, replication 1, "
        "RocksDB WAL fsync'd, group commit)",
        "- **placement**: servers, SDK process and load generator share all CPUs (no pinning), loopback only",
        f"- **load**: {st['loadgen']}"
        + (
            f" -t{st['wrk_threads']} (threads ≤ conc)"
            if st["loadgen"] == "wrk"
            else " (python -m bench.loadgen)"
        )
        + f", HTTP/1.1 keep-alive, one connection per unit of concurrency; {st['warmup_s']} s warm-up "
        f"(discarded) then {st['duration_s']} s measured per point; request timeout {st['timeout_s']} s",
        f"- **command**: `{st['command']}`",
        "",
    ]
    for run in doc["runs"]:
        lines.append(
            f"- **{run['server']} server / {run['sdk']} SDK**: {run['server_version']}; durability: "
            f"{run['durability']}; service: {run['sdk_version']} (`{run['sdk_command']}`); drain "
            f"probe: {run['drain_probe']}"
            + (f"; data dir at the end {run['data_dir_mb']} MB" if "data_dir_mb" in run else "")
        )
    for sk in doc["skipped"]:
        first = sk["reason"].strip().splitlines()[0] if sk["reason"].strip() else "?"
        lines.append(f"- **{sk['server']} server / {sk['sdk']} SDK: skipped** - {first}")
    for fl in doc.get("failed", []):
        lines.append(
            f"- **{fl['server']} server / {fl['sdk']} SDK, {fl['workload']} c={fl['conc']}: failed** "
            f"- {fl['error'].splitlines()[0][:300]}"
        )
    lines += [
        "",
        "Throughput counts 2xx responses per second of the measured window. CPU s = CPU seconds of the whole "
        "process tree during the window (server; SDK = hypercorn supervisor + worker; load generator from "
        "its rusage); ms/req = CPU ms per acknowledged request; RSS = peak sampled RSS (MB); host = busy % "
        "of all CPUs, everything included (other work on a shared machine shows up here).",
        "",
    ]
    results = doc["results"]
    for sdk in st["sdks"]:
        rows = [r for r in results if r["sdk"] == sdk]
        if not rows:
            continue
        lines += [
            f"## Service on the {sdk} SDK",
            "",
            "| server | workload | conc | req/s | p50 ms | p90 ms | p99 ms | errors | server CPU s "
            "(ms/req) | server RSS | SDK CPU s (ms/req) | SDK RSS | loadgen CPU s | loadgen RSS | "
            "host % |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            u = r["usage"]
            lines.append(
                f"| {r['server']} | {workloads[r['workload']].label} | {r['conc']} | {r['rps']:.0f} | "
                f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {_errors(r)} | "
                f"{u['server']['cpu_s']} ({_f(u['server']['ms_per_req'], 3)}) | "
                f"{u['server']['peak_rss_mb']} | "
                f"{u['sdk']['cpu_s']} ({_f(u['sdk']['ms_per_req'], 3)}) | {u['sdk']['peak_rss_mb']} | "
                f"{u['loadgen']['cpu_s']} | {u['loadgen']['peak_rss_mb']} | {r['host']['busy_pct']} |"
            )
        lines += _ratios(rows, workloads)
        lines += _workers(rows, workloads)
        lines += _sends(rows)
        lines += _counters(rows, workloads)
    return "\n".join(lines) + "\n"


def _ratios(rows: list[Mapping[str, Any]], workloads: Mapping[str, _Labelled]) -> list[str]:
    by = {(r["server"], r["workload"], r["conc"]): r for r in rows}
    points = sorted(
        {(r["workload"], r["conc"]) for r in rows}, key=lambda p: (list(workloads).index(p[0]), p[1])
    )
    out = [
        "",
        "### pyrestate / official, per point",
        "",
        "Throughput ratio > 1 and latency ratio < 1 favour pyrestate. Targets: throughput ≥ 1.0x on (a)-(d) "
        "at conc 64; p50 ≤ 1.5x at conc 1.",
        "",
        "| workload | conc | req/s | p50 | p90 | p99 | server ms/req | SDK ms/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for wl, conc in points:
        py, off = by.get(("pyrestate", wl, conc)), by.get(("official", wl, conc))
        if py is None or off is None:
            out.append(f"| {workloads[wl].label} | {conc} | - | - | - | - | - | - |")
            continue
        pu, ou = py["usage"], off["usage"]
        out.append(
            f"| {workloads[wl].label} | {conc} | {_ratio(py['rps'], off['rps'])} | "
            f"{_ratio(py['p50_ms'], off['p50_ms'])} | {_ratio(py['p90_ms'], off['p90_ms'])} | "
            f"{_ratio(py['p99_ms'], off['p99_ms'])} | "
            f"{_ratio(pu['server']['ms_per_req'], ou['server']['ms_per_req'])} | "
            f"{_ratio(pu['sdk']['ms_per_req'], ou['sdk']['ms_per_req'])} |"
        )
    if not any(r["server"] == "pyrestate" for r in rows):
        out += ["", "No pyrestate point in this run, so no ratio (see the skip reason above)."]
    return out


# (more, fewer, heading): the same engine with more processes, over fewer.
_SCALING = (
    ("pyrestate-w2", "pyrestate", "pyrestate --workers 2 / --workers 1"),
    ("pyrestate-pg2", "pyrestate-pg1", "2 nodes on PostgreSQL / 1 node on PostgreSQL"),
    ("pyrestate-pg1", "pyrestate", "1 node on PostgreSQL / SQLite"),
)


def _workers(rows: list[Mapping[str, Any]], workloads: Mapping[str, _Labelled]) -> list[str]:
    """What more processes (workers, nodes) give over fewer, where both ran."""
    by = {(r["server"], r["workload"], r["conc"]): r for r in rows}
    out: list[str] = []
    for more, fewer, heading in _SCALING:
        points = [(wl, c) for (srv, wl, c) in by if srv == more and (fewer, wl, c) in by]
        if not points:
            continue
        out += [
            "",
            f"### {heading}, per point",
            "",
            "| workload | conc | req/s | p50 | server ms/req |",
            "|---|---:|---:|---:|---:|",
        ]
        for wl, conc in sorted(points, key=lambda p: (list(workloads).index(p[0]), p[1])):
            m, f = by[(more, wl, conc)], by[(fewer, wl, conc)]
            out.append(
                f"| {workloads[wl].label} | {conc} | {_ratio(m['rps'], f['rps'])} | "
                f"{_ratio(m['p50_ms'], f['p50_ms'])} | "
                f"{_ratio(m['usage']['server']['ms_per_req'], f['usage']['server']['ms_per_req'])} |"
            )
    return out


def _sends(rows: list[Mapping[str, Any]]) -> list[str]:
    sends = [r for r in rows if "drain" in r]
    if not sends:
        return []
    out = [
        "",
        "### (d) /send: accept rate and backlog drain",
        "",
        "accepted/s = 202 responses per second in the window; backlog = invocations not completed when "
        "the window ends (`~` = estimated from a sample); drain s = from the end of the window until "
        "the probe sees none pending; completed/s = accepted / (window + drain).",
        "",
        "| server | conc | accepted/s | p50 ms | p99 ms | errors | backlog | drain s | completed/s | "
        "completed/s ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    off = {r["conc"]: r["drain"]["completed_rps"] for r in sends if r["server"] == "official"}
    for r in sends:
        d = r["drain"]
        backlog = _f(d["backlog_at_end"])
        if d["backlog_at_end"] is not None and not d["backlog_exact"]:
            backlog = "~" + backlog
        ratio = _ratio(d["completed_rps"], off.get(r["conc"])) if r["server"] == "pyrestate" else ""
        if d.get("probe_disagreed"):
            backlog += " (SQL count disagreed with outputs)"
        out.append(
            f"| {r['server']} | {r['conc']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['errors']} | {backlog} | {_f(d['seconds'], 2)} | {_f(d['completed_rps'])} | {ratio} |"
        )
    return out


def _counters(rows: list[Mapping[str, Any]], workloads: Mapping[str, _Labelled]) -> list[str]:
    cs = [r for r in rows if "counter" in r]
    if not cs:
        return []
    out = [
        "",
        "### (c) Counter check: final sum vs. acknowledged adds",
        "",
        "Each point counts on fresh keys. Adds cut in flight at the end of the window may still apply, "
        "so a correct server ends with acknowledged ≤ final ≤ sent.",
        "",
        "| server | workload | conc | acknowledged | sent | final | verdict |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in cs:
        c = r["counter"]
        out.append(
            f"| {r['server']} | {workloads[r['workload']].label} | {r['conc']} | {c['acked']} | "
            f"{c['sent']} | {c['final']} | {'ok' if c['ok'] else '**FAIL**'}: {c['verdict']} |"
        )
    return out
