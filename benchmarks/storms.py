"""Deploy day on one machine: a rolling restart under load, and the same reconnect storm
with immediate reconnects and with full jitter, side by side.

Three real ``wirelab run``s on the replicated local lab (redis-server, N target processes
per protocol, HAProxy in front of REST/SSE/WS, gRPC balanced by the clients):

1. ``rolling-deploy``, 3 replicas per protocol: 500 WebSocket + 500 SSE + 200 gRPC stream
   clients, plus REST ``POST /echo`` and gRPC unary ``Echo`` traffic; every replica replaced
   one at a time at 20 s. Goal: 0 failed REST, 0 failed gRPC unary, 0 lost, 0 duplicated.
2. ``reconnect-storm`` with ``--reconnect immediate``: every WS and SSE connection reset at
   once (admin drop on every replica).
3. The same storm with ``full_jitter:base=5,cap=5``. Goals: the peak accept rate (100 ms
   buckets, all replicas) at least 5x lower than (2)'s, and 99 % of the clients back within
   the jitter cap + 1 s.

Run (about 4 minutes; ``--quick`` runs a fifth of the clients):

    .venv/bin/python benchmarks/storms.py [--quick] [--report-dir reports/bench-storms]

Prints a table, writes benchmarks/results/storms.json and storms-side-by-side.html (both
storms in one page), and leaves the three run directories (reports, logs) in the report dir.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from wirelab.metrics.results import load_results
from wirelab.report.deploy import deploy_summary, render_comparison
from wirelab.scenarios import load_scenario  # noqa: F401 - the built-ins must parse

RESULTS = Path(__file__).parent / "results"
JITTER_CAP_S = 5.0


def deploy_scenario(scale: float) -> dict[str, Any]:
    return {
        "name": "bench-rolling-deploy",
        "description": "rolling restart of 3 replicas per protocol under load",
        "duration": "70s",
        "workers": 2,
        "spawn_rate": 200,
        "replicas": 3,
        "users": {
            "ws_feed": int(500 * scale),
            "sse": int(500 * scale),
            "grpc_feed": int(200 * scale),
            "rest_echo": 20,
            "grpc": 20,
        },
        # 5 events/s to 1,240 stream clients is 6,200 deliveries/s for two Locust workers
        # on this 2-core machine (they also hold every connection); see the CPU column.
        "feed": {"rate": 5},
        "reconnect": "server_hint:base=0.5,cap=5",
        "lab": {"grace": "15s", "drain_delay": "500ms", "retry_ms": 500, "retry_jitter_ms": 3000},
        "actions": [{"at": "20s", "do": "rolling_restart", "service": "all"}],
        "thresholds": [
            "rest:failures==0", "grpc Echo:failures==0", "sse:lost==0", "ws:lost==0",
            "grpc:lost==0", "*:duplicates==0",
        ],
    }  # fmt: skip


def storm_scenario(scale: float, reconnect: str) -> dict[str, Any]:
    return {
        "name": "bench-reconnect-storm",
        "description": f"every WS and SSE connection reset at once; reconnect {reconnect}",
        "duration": "30s",
        "workers": 2,
        "spawn_rate": 200,
        "replicas": 2,
        "users": {"ws_feed": int(250 * scale), "sse": int(250 * scale)},
        "feed": {"rate": 10},
        "reconnect": reconnect,
        "actions": [{"at": "12s", "do": "drop_connections", "service": "all"}],
        "thresholds": ["sse:lost==0", "ws:lost==0", "*:duplicates==0"],
    }


def run(scenario: dict[str, Any], report_dir: Path, workdir: Path) -> tuple[int, Path, float]:
    path = workdir / f"{scenario['name']}-{int(time.time() * 1000)}.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    before = {p for p in report_dir.iterdir()} if report_dir.exists() else set()
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "wirelab", "run", "--scenario", str(path),
         "--report-dir", str(report_dir), "--no-progress"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    took = time.monotonic() - started
    (run_dir,) = [p for p in report_dir.iterdir() if p.is_dir() and p not in before]
    if result.returncode not in (0, 1):
        print(result.stdout[-3000:], result.stderr[-3000:], file=sys.stderr)
    return result.returncode, run_dir, took


def worker_cpu(run_dir: Path) -> float:
    """Highest per-interval CPU of any Locust worker, % of one core."""
    points = load_results(run_dir).series("worker_health")
    return max((float(p.fields.get("cpu_percent", 0)) for p in points), default=0.0)


def deploy_figures(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((run_dir / "summary.json").read_text())
    streams = {row["protocol"]: row for row in summary["streams"]}
    requests = summary["requests"]
    rest = [row for row in requests if row["protocol"] == "rest"]
    echo = next(row for row in requests if row["name"] == "grpc Echo")
    deploy = summary["deploy"]
    return {
        "run_id": summary["run_id"],
        "exit_code": summary["exit_code"],
        "clients": {p: row["connected_peak"] for p, row in streams.items()},
        "rest_requests": sum(row["count"] for row in rest),
        "rest_failed": sum(row["failures"] for row in rest),
        "grpc_unary_calls": echo["count"],
        "grpc_unary_failed": echo["failures"],
        "grpc_unary_errors": echo["errors"],
        "lost": {p: row["missing"] + row["reset_lost"] for p, row in streams.items()},
        "duplicated": {p: row["duplicates"] for p, row in streams.items()},
        "reconnects": {p: row["reconnects"] for p, row in streams.items()},
        "deploy_took_s": deploy["actions"][0]["duration_s"],
        "back_99_s": {p: f["back_99_s"] for p, f in deploy["actions"][0]["protocols"].items()},
        "worker_cpu_max_pct": round(worker_cpu(run_dir), 1),
    }


def storm_figures(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((run_dir / "summary.json").read_text())
    deploy = summary["deploy"]
    action = deploy["actions"][0]["protocols"]
    streams = {row["protocol"]: row for row in summary["streams"]}
    buckets = _all_accepts(run_dir, deploy["actions"][0]["started_at"])
    return {
        "run_id": summary["run_id"],
        "exit_code": summary["exit_code"],
        "clients": sum(row["connected_peak"] for row in streams.values()),
        "peak_accept_rate": max(buckets, default=0) * 10,
        "per_protocol": {
            p: {
                "peak_accept_rate": f["peak_accept_rate"],
                "back_99_s": f["back_99_s"],
                "accept_peak_to_mean": f["accept_peak_to_mean"],
                "reconnect_p99_ms": deploy["protocols"][p]["reconnect_ms"]["p99"],
                "connect_failures": deploy["protocols"][p]["connect_failures"],
            }
            for p, f in action.items()
        },
        "back_99_s": max((f["back_99_s"] or float("inf")) for f in action.values()),
        "lost": sum(row["missing"] + row["reset_lost"] for row in streams.values()),
        "duplicated": sum(row["duplicates"] for row in streams.values()),
        "worker_cpu_max_pct": round(worker_cpu(run_dir), 1),
    }


def _all_accepts(run_dir: Path, since: float) -> list[int]:
    """Accepts of every replica per 100 ms bucket, in the 10 s after ``since``."""
    counts: dict[int, int] = {}
    for point in load_results(run_dir).series("target_accepts"):
        bucket = (point.time_ns or 0) // 100_000_000
        counts[bucket] = counts.get(bucket, 0) + int(point.fields["accepted"])
    first = int(since * 10)
    return [counts.get(index, 0) for index in range(first, first + 100)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the clients")
    parser.add_argument("--report-dir", type=Path, default=Path("reports/bench-storms"))
    parser.add_argument("--skip-deploy", action="store_true", help="only the two storms")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    args.report_dir.mkdir(parents=True, exist_ok=True)
    workdir = args.report_dir

    record: dict[str, Any] = {
        "machine": {
            "cpus": psutil.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
        },
        "scale": scale,
    }
    if not args.skip_deploy:
        _code, run_dir, took = run(deploy_scenario(scale), args.report_dir, workdir)
        record["rolling_deploy"] = {**deploy_figures(run_dir), "wall_s": round(took, 1)}
    storms = {}
    runs = []
    for label, reconnect in (
        ("immediate", "immediate"),
        ("full_jitter", f"full_jitter:base={JITTER_CAP_S:g},cap={JITTER_CAP_S:g}"),
    ):
        _code, run_dir, took = run(storm_scenario(scale, reconnect), args.report_dir, workdir)
        storms[label] = {**storm_figures(run_dir), "reconnect": reconnect, "wall_s": round(took, 1)}
        results = load_results(run_dir)
        runs.append((f"reconnect {reconnect}", deploy_summary(results), results))
    record["storm"] = storms
    immediate, jitter = storms["immediate"], storms["full_jitter"]
    ratio = immediate["peak_accept_rate"] / max(1, jitter["peak_accept_rate"])
    record["storm_peak_ratio"] = round(ratio, 1)
    record["goals"] = {
        "peak_ratio_at_least_5x": ratio >= 5,
        "jitter_99pct_back_within_cap_plus_1s": jitter["back_99_s"] <= JITTER_CAP_S + 1,
    }
    page = args.report_dir / "storms-side-by-side.html"
    page.write_text(render_comparison(runs, title="Reconnect storm: immediate vs full jitter"))

    print_table(record)
    print(f"\nside by side: {page}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "storms.json").write_text(json.dumps(record, indent=2) + "\n")
    # The page is self-contained (inline SVG): kept with the numbers it shows.
    (RESULTS / "storms-side-by-side.html").write_text(page.read_text())
    print(f"recorded: {RESULTS / 'storms.json'}, {RESULTS / 'storms-side-by-side.html'}")
    return 0


def print_table(record: dict[str, Any]) -> None:
    deploy = record.get("rolling_deploy")
    if deploy:
        print("\nrolling restart, 3 replicas per protocol, under load")
        print(f"  clients (peak)        {deploy['clients']}")
        print(
            f"  REST requests         {deploy['rest_requests']:>7}  failed {deploy['rest_failed']}"
        )
        print(
            f"  gRPC unary calls      {deploy['grpc_unary_calls']:>7}  failed "
            f"{deploy['grpc_unary_failed']} {deploy['grpc_unary_errors'] or ''}"
        )
        print(f"  lost events           {deploy['lost']}")
        print(f"  delivered twice       {deploy['duplicated']}")
        took, back = deploy["deploy_took_s"], deploy["back_99_s"]
        print(f"  deploy took           {took:.1f} s; 99% of clients back after {back} s")
        print(f"  worker CPU (max)      {deploy['worker_cpu_max_pct']} % of a core")
    print(f"\n{'storm':<14}{'clients':>8}{'peak acc/s':>12}{'99% back s':>12}"
          f"{'recon p99 ms':>14}{'lost':>6}{'dup':>5}{'cpu %':>7}")  # fmt: skip
    for label, storm in record["storm"].items():
        p99 = max(v["reconnect_p99_ms"] or 0 for v in storm["per_protocol"].values())
        print(
            f"{label:<14}{storm['clients']:>8}{storm['peak_accept_rate']:>12}"
            f"{storm['back_99_s']:>12.2f}{p99:>14.0f}{storm['lost']:>6}{storm['duplicated']:>5}"
            f"{storm['worker_cpu_max_pct']:>7}"
        )
    print(f"\npeak accept rate, immediate / full jitter: {record['storm_peak_ratio']}x")
    print(f"goals: {record['goals']}")


if __name__ == "__main__":
    sys.exit(main())
