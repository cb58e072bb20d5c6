"""Peers part pieces on tiny runs: the interleaved REST/nginx comparison and the ratios to
plain Locust (correctness, not speed). Real wrk, nginx and REST target on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from wirelab_bench.lab import Target
from wirelab_bench.peers import _relative, _rest_vs_nginx, _run_http_tools, merge_figures


@pytest.mark.timeout(120)
def test_rest_and_nginx_are_measured_in_alternating_slices(tmp_path: Path):
    with Target(tmp_path, "rest", "--rate", "0") as target:
        found = _rest_vs_nginx(tmp_path, target, connections=4, duration=1)
    assert (found["slices"], found["slice_s"]) == (2, 2)
    nginx = found["nginx"]
    assert nginx["requests"] > 0 and nginx["failures"] == 0
    assert nginx["rps"] == pytest.approx(nginx["requests"] / 4, abs=0.1)
    rest_requests = found["rest_rps"] * 4
    assert found["rest_over_nginx"] == pytest.approx(rest_requests / nginx["requests"], abs=0.002)
    # The whole-run ratio lies between the slowest and the fastest slice pair's.
    assert found["slice_ratio_min"] - 0.001 <= found["rest_over_nginx"]
    assert found["rest_over_nginx"] <= found["slice_ratio_max"] + 0.001
    assert 0 < found["rest_target_cpu_pct"] <= 110


def test_relative_divides_by_plain_locust_of_the_same_repetition():
    throughput = {
        "wrk": {"requests_per_cpu_s": 80_000},
        "Wirelab": {"requests_per_cpu_s": 7_000},
        "PlainLocust": {"requests_per_cpu_s": 8_000},
        "broken": {"requests_per_cpu_s": None},
    }
    assert _relative(throughput) == {
        "wrk": {"per_cpu_s_vs_plain_locust": 10.0},
        "Wirelab": {"per_cpu_s_vs_plain_locust": 0.875},
        "PlainLocust": {"per_cpu_s_vs_plain_locust": 1.0},
    }
    assert _relative({"wrk": {"requests_per_cpu_s": 1}}) == {}


def test_a_tools_rounds_add_up_to_one_row():
    rounds = [
        {"requests": 1000, "rps": 500.0, "mean_ms": 2.0, "p50_ms": 1.0, "p99_ms": 9.0,
         "failures": 1},
        {"requests": 3000, "rps": 1000.0, "mean_ms": 1.0, "p50_ms": 3.0, "p99_ms": None,
         "failures": 0},
    ]  # fmt: skip
    merged = merge_figures(rounds)
    # 4,000 requests over the 2 s + 3 s the tool measured itself.
    assert merged["requests"] == 4000 and merged["rps"] == 800.0
    assert merged["mean_ms"] == 1.25  # weighted by requests: (2,000 + 3,000) / 4,000
    assert (merged["p50_ms"], merged["p99_ms"]) == (2.0, 9.0)
    assert merged["failures"] == 1 and merged["rounds"] == 2


@pytest.mark.timeout(120)
def test_every_tool_runs_once_per_round_against_the_same_target(tmp_path: Path):
    with Target(tmp_path, "rest", "--rate", "0") as target:
        rows = _run_http_tools(
            tmp_path,
            target,
            connections=2,
            duration=1,
            delay_ms=0,
            tools=["wrk", "h2load"],
            rounds=2,
        )
    assert set(rows) == {"wrk", "h2load"}
    for row in rows.values():
        assert row["rounds"] == 2
        assert row["requests"] > 0 and row["failures"] == 0
        # CPU over both rounds (the row's CPU seconds are rounded to the millisecond).
        per_cpu_s = row["requests"] / row["generator_cpu_s"]
        assert row["requests_per_cpu_s"] == pytest.approx(per_cpu_s, rel=0.005)
