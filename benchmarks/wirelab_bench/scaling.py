"""Scaling: throughput and generator CPU as Locust workers go 1 → 2 (and 8) on this machine,
and a model of the cluster beyond it.

Each point is a real ``wirelab run`` (master + W worker processes over ZeroMQ) driving one
REST target started here, open model at an arrival rate above what the machine can do, so
what comes back is capacity; the run's process tree (master and workers) and the target are
sampled for CPU. The model:

- per request, the generator spends ``g`` CPU-seconds (workers), the target ``t``; the
  master spends ``m`` per worker report (measured below, one report per worker per second);
- on this machine (``C`` cores shared by everyone): ``X(W) = min(W/g, 1/t, C'/(g + t))``
  with ``C'`` = cores left after the master and other load seen in the 1-worker run;
- on a cluster (a core per worker, the target elsewhere): ``X(W) = W/g`` until the target
  saturates, and one master core merges ``1/m`` reports a second, i.e. that many workers.

The report cost ``m`` is measured on a synthetic but typical worker report: the recorder's
delta (request and stream series with populated histograms) packed with msgpack as Locust
sends it, then unpacked and merged into the master's aggregate.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from .interleave import alternating_rounds
from .lab import Target
from .stats import per_1k

__all__ = ["measure_report_cost", "measure_scaling", "merge_points", "model"]

SCENARIO = """name: bench-scaling
description: wirelab bench scaling point (REST echo, open model)
duration: {duration}s
workers: {workers}
spawn_rate: 1000
users:
  rest: 1
"""


def _tree_cpu(root: psutil.Process, last: dict[int, float]) -> None:
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            times = proc.cpu_times()
            last[proc.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            continue


def run_point(
    workdir: Path, target: Target, *, workers: int, users: int, rate: float, duration: float
) -> dict[str, Any]:
    """One ``wirelab run`` with ``workers`` workers; throughput and CPU of every side."""
    scenario = workdir / f"scaling-{workers}.yaml"
    scenario.write_text(SCENARIO.format(duration=duration, workers=workers))
    report_dir = workdir / f"scaling-{workers}-{time.time_ns()}"
    argv = [
        sys.executable,
        "-m",
        "wirelab",
        "run",
        "--scenario",
        str(scenario),
        "--protocols",
        "rest",
        "--users",
        str(users),
        "--workers",
        str(workers),
        "--duration",
        f"{duration:g}s",
        "--rate",
        f"{rate:g}/s",
        "--rest-url",
        target.url,
        "--report-dir",
        str(report_dir),
        "--no-progress",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WIRELAB_", "LOCUST_"))}
    # Above capacity on purpose: starts with no free lane are dropped, not queued, so the
    # figure is the generator's throughput rather than a backlog's.
    env["WIRELAB_OPEN_MAX_WAIT"] = "0"
    last: dict[int, float] = {}
    target_before = target.cpu()
    started = time.monotonic()
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    root = psutil.Process(process.pid)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            _tree_cpu(root, last)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate(timeout=duration + 180)
    done.set()
    sampler.join()
    wall = time.monotonic() - started
    target_cpu = target.cpu() - target_before
    summaries = list(report_dir.glob("*/summary.json"))
    if not summaries:
        raise RuntimeError(
            f"wirelab run wrote no summary (exit {process.returncode}):\n{output[-3000:]}"
        )
    summary = json.loads(summaries[0].read_text())
    rows = [row for row in summary["requests"] if row["protocol"] == "rest"]
    count = sum(row["count"] for row in rows)
    dropped = sum(row.get("dropped", 0) for row in rows)
    run_s = summary.get("duration_s") or duration
    p99 = max((row["latency_ms"]["p99"] or 0) for row in rows) if rows else None
    generator_cpu = sum(last.values())
    steady = steady_worker_cost(summaries[0].parent / "timeseries.lp")
    return {
        **steady,
        "workers": workers,
        "requests": count,
        "rps": round(count / run_s, 1),
        "dropped": dropped,
        "p99_ms": p99,
        "run_s": run_s,
        # Master and workers together, start-up included (the process tree of `wirelab run`).
        "generator_tree_cpu_s": round(generator_cpu, 2),
        "generator_cpu_s_per_1k": per_1k(generator_cpu, count),
        "target_cpu_s": round(target_cpu, 2),
        "target_cpu_pct": round(100 * target_cpu / run_s, 1),
        "target_cpu_s_per_1k": per_1k(target_cpu, count),
        "wall_s": round(wall, 1),
        "exit_code": process.returncode,
    }


def merge_points(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs with one worker count as one point: requests, seconds and CPU added, the
    steady figures weighted by each run's steady intervals, p99 the median of the runs'."""
    merged: dict[str, Any] = {"workers": runs[0]["workers"]}
    for key in ("requests", "dropped", "run_s", "generator_tree_cpu_s", "target_cpu_s"):
        merged[key] = sum(run[key] for run in runs)
    requests, run_s = merged["requests"], merged["run_s"]
    merged.update(
        rps=round(requests / run_s, 1) if run_s else 0.0,
        p99_ms=statistics.median(run["p99_ms"] or 0 for run in runs),
        generator_tree_cpu_s=round(merged["generator_tree_cpu_s"], 2),
        generator_cpu_s_per_1k=per_1k(merged["generator_tree_cpu_s"], requests),
        target_cpu_s=round(merged["target_cpu_s"], 2),
        target_cpu_pct=round(100 * merged["target_cpu_s"] / run_s, 1) if run_s else None,
        target_cpu_s_per_1k=per_1k(merged["target_cpu_s"], requests),
        wall_s=round(sum(run["wall_s"] for run in runs), 1),
        exit_code=max(run["exit_code"] for run in runs),
        rounds=len(runs),
    )
    steady = [run for run in runs if run.get("steady_intervals")]
    intervals = sum(run["steady_intervals"] for run in steady)
    if intervals:
        steady_requests = sum(run["steady_rps"] * run["steady_intervals"] for run in steady)
        cores = sum(run["steady_worker_cpu_cores"] * run["steady_intervals"] for run in steady)
        merged.update(
            steady_intervals=intervals,
            steady_rps=round(steady_requests / intervals, 1),
            steady_worker_cpu_cores=round(cores / intervals, 2),
            worker_cpu_s_per_1k=per_1k(cores, steady_requests),
        )
    return merged


def steady_worker_cost(timeseries: Path) -> dict[str, Any]:
    """Workers' CPU per request over the steady intervals of a run (from its own metrics).

    Every interval the workers report their CPU (``worker_health cpu_percent``) and the master
    writes the interval's request count; intervals with at least half the peak count are the
    steady state (start-up and shutdown left out).
    """
    counts: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for line in timeseries.read_text().splitlines():
        head, _, rest = line.partition(" ")
        while head.endswith("\\"):  # an escaped space inside the tags
            more, _, rest = rest.partition(" ")
            head = f"{head} {more}"
        fields, _, stamp = rest.rpartition(" ")
        values = dict(field.split("=", 1) for field in fields.split(","))
        if head.startswith("requests,") and "protocol=rest" in head:
            counts[int(stamp)] = counts.get(int(stamp), 0) + int(values["count"].rstrip("i"))
        elif head.startswith("worker_health,"):
            cpu[int(stamp)] = cpu.get(int(stamp), 0.0) + float(values["cpu_percent"]) / 100
    if not counts:
        return {}
    peak = max(counts.values())
    steady = [stamp for stamp, count in counts.items() if count >= peak / 2 and stamp in cpu]
    requests = sum(counts[stamp] for stamp in steady)
    if not requests:
        return {}
    return {
        "steady_intervals": len(steady),
        "steady_rps": round(requests / len(steady), 1),
        "steady_worker_cpu_cores": round(sum(cpu[stamp] for stamp in steady) / len(steady), 2),
        "worker_cpu_s_per_1k": per_1k(sum(cpu[stamp] for stamp in steady), requests),
    }


def measure_report_cost(series: int = 12, samples: int = 2000, rounds: int = 200) -> dict[str, Any]:
    """Size of one worker report on the wire and the master's cost to unpack and merge it."""
    import random  # noqa: PLC0415

    import msgpack  # noqa: PLC0415

    from wirelab.metrics.health import health_sample  # noqa: PLC0415
    from wirelab.metrics.recorder import Aggregate, Recorder  # noqa: PLC0415

    rng = random.Random(7)

    def delta() -> dict[str, Any]:
        recorder = Recorder()
        for index in range(series // 2):
            for _ in range(samples):
                recorder.request("rest", f"rest op {index}", rng.lognormvariate(-6, 0.8))
            stream = recorder.stream("ws", f"ws deliver {index}")
            for _ in range(samples):
                stream.record_event("ok", rng.lognormvariate(7, 0.8))
            stream.delivered += samples
        return {**recorder.take_delta(), "health": health_sample()}

    reports = [msgpack.packb({"wirelab": delta()}, use_bin_type=True) for _ in range(5)]
    aggregate = Aggregate()
    started = time.perf_counter()
    for index in range(rounds):
        data = msgpack.unpackb(reports[index % len(reports)], raw=False)
        aggregate.add(f"worker-{index % 8}", data["wirelab"])
        if index % 8 == 7:
            aggregate.take_interval()
    cost = (time.perf_counter() - started) / rounds
    return {
        "series_per_report": series,
        "report_bytes": round(sum(map(len, reports)) / len(reports)),
        "merge_ms_per_report": round(cost * 1000, 3),
        "reports_per_master_core_s": round(1 / cost),
    }


def model(points: dict[int, dict[str, Any]], report: dict[str, Any], cores: int) -> dict[str, Any]:
    """Predict 2 and 8 workers here, and the cluster, from the 1-worker point."""
    one = points[1]
    g = (one.get("worker_cpu_s_per_1k") or one["generator_cpu_s_per_1k"] or 0) / 1000
    t = (one["target_cpu_s_per_1k"] or 0) / 1000
    if not g or not t:
        return {}
    # Cores the 1-worker run kept busy (master, worker, target), out of the machine's.
    busy = (one["generator_tree_cpu_s"] + one["target_cpu_s"]) / one["run_s"]
    # The master's own CPU and whatever else runs here are not in g or t.
    predictions = {}
    for workers, point in points.items():
        predicted = min(workers / g, 1 / t, cores / (g + t))
        predictions[str(workers)] = {
            "predicted_rps": round(predicted),
            "measured_rps": point.get("steady_rps", point["rps"]),
            "measured_over_predicted": round(point.get("steady_rps", point["rps"]) / predicted, 3)
            if predicted
            else None,
        }
    per_worker = 1 / g
    return {
        "generator_cpu_s_per_request": round(g, 7),
        "target_cpu_s_per_request": round(t, 7),
        "per_worker_capacity_rps": round(per_worker),
        "target_capacity_rps": round(1 / t),
        "machine_capacity_rps": round(cores / (g + t)),
        "cores_used_by_1_worker_run": round(busy, 2),
        "here": predictions,
        "cluster": {
            "workers_per_master_core": report["reports_per_master_core_s"],
            "rps_at_10_workers": round(10 * per_worker),
            "rps_at_100_workers": round(100 * per_worker),
            "zeromq_bytes_per_s_at_100_workers": 100 * report["report_bytes"],
            "note": "a core per worker, targets elsewhere and not saturated; one report per "
            "worker per second",
        },
    }


def measure_scaling(
    workdir: Path,
    *,
    workers: list[int],
    users: int,
    rate: float,
    duration: float,
    rounds: int = 1,
    log: Any = print,
) -> dict[str, Any]:
    """One repetition: ``rounds`` runs per worker count against one REST target, the worker
    counts in alternating rounds (see :func:`alternating_rounds`), merged per count."""
    runs: dict[int, list[dict[str, Any]]] = {count: [] for count in workers}
    with Target(workdir, "rest", "--rate", "0") as target:
        for order in alternating_rounds(workers, rounds):
            for count in order:
                point = run_point(
                    workdir, target, workers=count, users=users, rate=rate, duration=duration
                )
                runs[count].append(point)
                log(
                    f"  scaling workers {count}: {point['rps']} req/s, "
                    f"dropped {point['dropped']}, "
                    f"generator {point['generator_tree_cpu_s']} CPU-s, "
                    f"target {point['target_cpu_pct']}%"
                )
    points = {count: merge_points(found) for count, found in runs.items()}
    report = measure_report_cost()
    return {
        "points": {str(k): v for k, v in points.items()},
        "report": report,
        "model": model(points, report, psutil.cpu_count() or 1) if 1 in points else {},
    }
