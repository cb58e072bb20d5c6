"""The core speed probe, the host-steal reading, and their summaries (correctness on a tiny
probe and on written ``/proc/stat`` texts, never speed)."""

from __future__ import annotations

import os
from pathlib import Path

from wirelab_bench.speed import cpu_ticks, probe, steal_summary, summarize_probes


def test_probe_times_the_unit_on_each_core_it_is_given():
    core = min(os.sched_getaffinity(0))
    found = probe(units=3, cores=[core])
    assert list(found) == [str(core)]
    row = found[str(core)]
    assert 0 < row["min_ms"] <= row["median_ms"] <= row["max_ms"]


def test_summary_spans_every_probe_and_core():
    probes = [
        {"0": {"median_ms": 30.0, "min_ms": 20.0, "max_ms": 35.0}},
        {"0": {"median_ms": 40.0, "min_ms": 25.0, "max_ms": 50.0},
         "1": {"median_ms": 36.0, "min_ms": 30.0, "max_ms": 38.0}},
    ]  # fmt: skip
    summary = summarize_probes(probes)
    assert summary == {
        "probes": 2,
        "median_ms": 36.0,
        "fastest_ms": 20.0,
        "slowest_ms": 50.0,
        "slowest_over_fastest": 2.5,
    }
    assert summarize_probes([]) == {"probes": 0}


def test_cpu_ticks_reads_busy_idle_and_steal_from_the_aggregate_line(tmp_path: Path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text(
        "cpu  1000 10 200 5000 40 0 30 70 400 0\ncpu0 500 5 100 2500 20 0 15 35 200 0\n"
    )
    # guest (400) is inside user already and is not counted twice.
    assert cpu_ticks(stat) == {"busy": 1240, "idle": 5040, "steal": 70}
    stat.write_text("intr 1 2 3\n")
    assert cpu_ticks(stat) is None
    assert cpu_ticks(tmp_path / "missing") is None
    here = cpu_ticks()  # this machine's own counters
    assert here is not None and here["busy"] > 0 and here["steal"] >= 0


def test_steal_summary_is_the_share_of_wanted_time_over_the_run_and_its_worst_part():
    readings = [
        {"at": "rep 1 request start", "ticks": {"busy": 1000, "idle": 0, "steal": 0}},
        # request: 900 busy + 100 stolen -> 10%
        {"at": "rep 1 push start", "ticks": {"busy": 1900, "idle": 50, "steal": 100}},
        # push: idle the whole time (no busy, no steal): no share, not the worst
        {"at": "rep 1 peers start", "ticks": {"busy": 1900, "idle": 900, "steal": 100}},
        {"at": "unreadable", "ticks": None},
        # peers: 300 busy + 100 stolen -> 25%
        {"at": "rep 1 end", "ticks": {"busy": 2200, "idle": 950, "steal": 200}},
    ]
    assert steal_summary(readings) == {
        "intervals": 2,
        "steal_pct": round(100 * 200 / 1400, 1),  # 1,200 busy + 200 stolen over the run
        "worst_pct": 25.0,
        "worst_at": "rep 1 peers start",
    }
    assert steal_summary(readings[:1]) == {"intervals": 0}
    assert steal_summary([]) == {"intervals": 0}
