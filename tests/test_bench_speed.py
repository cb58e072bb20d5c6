"""The core speed probe and its summary (correctness on a tiny probe, never speed)."""

from __future__ import annotations

import os

from wirelab.bench.speed import probe, summarize_probes


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
