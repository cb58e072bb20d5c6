"""Scaling points measured in rounds and merged per worker count (correctness on recorded
runs, never speed)."""

from __future__ import annotations

import pytest

from wirelab_bench.scaling import merge_points, model


def point(rps: float, *, cpu_cores: float, intervals: int = 6, p99: float = 5.0) -> dict:
    """A run as :func:`wirelab_bench.scaling.run_point` records it (8 s, one worker)."""
    return {
        "workers": 1,
        "requests": int(rps * 8),
        "dropped": 10,
        "run_s": 8.0,
        "rps": rps,
        "p99_ms": p99,
        "generator_tree_cpu_s": 8.0,
        "generator_cpu_s_per_1k": round(1000 * 8.0 / (rps * 8), 4),
        "target_cpu_s": 2.0,
        "target_cpu_pct": 25.0,
        "target_cpu_s_per_1k": round(1000 * 2.0 / (rps * 8), 4),
        "wall_s": 12.0,
        "exit_code": 0,
        "steady_intervals": intervals,
        "steady_rps": rps,
        "steady_worker_cpu_cores": cpu_cores,
        "worker_cpu_s_per_1k": round(1000 * cpu_cores / rps, 4),
    }


def test_two_rounds_of_one_worker_count_read_as_one_run_of_both():
    fast, slow = point(8000, cpu_cores=0.9, p99=4.0), point(6000, cpu_cores=0.95, intervals=4)
    merged = merge_points([fast, slow])
    assert merged["requests"] == 112_000 and merged["run_s"] == 16.0
    assert merged["rps"] == 7000.0 and merged["dropped"] == 20
    # Steady figures weigh each run by its steady intervals: (8000·6 + 6000·4) / 10.
    assert merged["steady_intervals"] == 10 and merged["steady_rps"] == 7200.0
    assert merged["steady_worker_cpu_cores"] == 0.92
    assert merged["worker_cpu_s_per_1k"] == round(1000 * (0.9 * 6 + 0.95 * 4) / 72_000, 4)
    assert merged["generator_cpu_s_per_1k"] == round(1000 * 16.0 / 112_000, 4)
    assert merged["target_cpu_pct"] == 25.0 and merged["p99_ms"] == 4.5
    assert merged["rounds"] == 2 and merged["exit_code"] == 0


def test_a_run_without_steady_intervals_adds_requests_but_not_steady_figures():
    broken = point(3000, cpu_cores=0.5)
    for key in ("steady_intervals", "steady_rps", "steady_worker_cpu_cores"):
        del broken[key]
    broken["exit_code"] = 1
    merged = merge_points([point(8000, cpu_cores=0.9), broken])
    assert merged["steady_rps"] == 8000.0 and merged["steady_intervals"] == 6
    assert merged["requests"] == 88_000 and merged["exit_code"] == 1


def test_the_model_reads_the_merged_one_worker_point():
    merged = merge_points([point(8000, cpu_cores=1.0), point(6000, cpu_cores=1.0)])
    report = {"reports_per_master_core_s": 2000, "report_bytes": 12_000}
    built = model({1: merged}, report, cores=2)
    # Per-worker capacity is 1 / (worker CPU-s per request) over both rounds.
    assert built["per_worker_capacity_rps"] == pytest.approx(7000, rel=0.001)
    assert built["here"]["1"]["measured_rps"] == 7000.0
