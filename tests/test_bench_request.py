"""The request/response figures: the fixed-rate slices' order and how they add up, and which
ladder steps may set a protocol's ceiling (correctness on recorded runs, never speed)."""

from __future__ import annotations

from typing import Any

import pytest

from wirelab.metrics.histogram import LogHistogram
from wirelab_bench import request
from wirelab_bench.request import (
    bisect_rates,
    ceiling,
    figures,
    lower_bound,
    measure_request,
    measures_target,
    merge_runs,
    plan,
    summarize_ladder,
)

RATES = [200, 1000, 2000, 4000]


def step(rate: float, *, held: bool = True, side: str | None = None, **extra: Any) -> dict:
    """A step as :func:`wirelab_bench.request.figures` makes it (the figures the ladder reads)."""
    return {
        "rate": rate,
        "achieved_rps": rate + 0.5,
        "sustained": held,
        "bottleneck": side,
        "p50_ms": rate / 1000,
        "p99_ms": rate / 100,
        "service_p50_ms": rate / 1000,
        "target_rss_mb": 40.0,
        "target_cpu_pct": 10.0,
        "generator_cpu_pct": 20.0,
        "target_cpu_s_per_1k_ops": 1 / rate,
        "generator_cpu_s_per_1k_ops": 2 / rate,
        "dropped_late": 0,
        "dropped_busy": 0,
        **extra,
    }


def test_latency_cpu_and_bytes_come_from_the_fixed_rate_slices_not_from_a_ladder_rung():
    steps = [step(200), step(1000), step(2000), step(4000)]
    fixed = step(1000, bytes_per_op_up=128.0, p50_ms=0.4, slice_figures=[{"p50_ms": 0.4}])
    row = summarize_ladder("REST", steps, RATES, fixed)
    assert row["fixed_rate"] == 1000
    assert (row["p50_ms"], row["p99_ms"]) == (0.4, 10.0)
    assert row["target_cpu_s_per_1k_ops"] == 1 / 1000
    assert row["bytes_per_op_up"] == 128.0
    assert row["slice_figures"] == [{"p50_ms": 0.4}]


def test_a_ladder_held_to_the_top_is_limited_by_its_end():
    steps = [step(rate) for rate in RATES]
    row = summarize_ladder("WS", steps, RATES, step(1000))
    assert (row["max_sustained_rate"], row["max_sustained_rps"]) == (4000, 4000.5)
    assert row["ladder_top_reached"] and row["limited_by"] == "ladder end"


def test_a_step_the_generator_could_not_drive_does_not_raise_the_ceiling_even_if_held():
    # Measured: gRPC's 4,000 req/s rung held in some repetitions and failed in others,
    # with the generator at 97-99% of its core every time; the ceiling it sets is the
    # generator's, so it is the rung below that counts, and "generator" is named.
    for held in (True, False):
        steps = [step(200), step(1000), step(2000), step(4000, held=held, side="generator")]
        row = summarize_ladder("gRPC", steps, RATES, step(1000))
        assert row["max_sustained_rate"] == 2000
        assert row["limited_by"] == "generator"
        assert not row["ladder_top_reached"]


def test_a_step_the_target_could_not_hold_sets_the_ceiling_and_names_the_target():
    steps = [step(200), step(1000), step(2000, held=False, side="target")]
    row = summarize_ladder("REST", steps, RATES, step(1000))
    assert row["max_sustained_rate"] == 1000
    assert row["limited_by"] == "target"


def test_bisection_halves_the_last_gap_towards_the_rate_that_holds():
    # A generator that runs out of CPU at 1,800 req/s: the doubling ladder alone says
    # 1,000 (2,000 failed); three halvings say 1,750.
    tried: list[float] = []

    def measure(rate: float) -> bool:
        tried.append(rate)
        return rate < 1800

    bisect_rates(1000, 2000, measure, 3)
    assert tried == [1500, 1750, 1875]
    tried.clear()
    bisect_rates(1000, 2000, lambda rate: tried.append(rate) or False, 3)
    assert tried == [1500, 1250, 1125]


def test_bisection_stops_when_the_gap_has_no_whole_rate_left():
    tried: list[float] = []
    bisect_rates(10, 12, lambda rate: tried.append(rate) or True, 5)
    assert tried == [11]


def test_bisection_rungs_set_the_ceiling_and_the_lowest_failure_names_who_ended_it():
    # As the ladder runs them: doubling up to the failure, then 1,500 held, 1,750 failed
    # (generator), 1,625 held.
    steps = [
        step(200),
        step(1000),
        step(2000, held=False, side="target"),
        step(1500),
        step(1750, side="generator"),
        step(1625),
    ]
    best, end = ceiling(steps)
    assert (best["rate"], end["rate"]) == (1625, 1750)
    row = summarize_ladder("REST", steps, RATES, step(1000))
    assert row["max_sustained_rate"] == 1625 and row["max_sustained_rps"] == 1625.5
    assert row["limited_by"] == "generator" and not row["ladder_top_reached"]


def test_the_ladder_runs_its_bisection_rungs_after_the_rung_that_ended_it(monkeypatch):
    """The ladder's own order of runs, with recorded runs in place of the generator (the
    real path is the tiny real repetition below): p99 over the bound from 1,800 req/s."""
    runs: list[float] = []

    def recorded(workdir, target, cls, rate, **options):
        runs.append(rate)
        p99_us = 1_000.0 if rate < 1800 else 90_000.0
        return {
            **run([500.0] * 97 + [p99_us] * 3, target_cpu_s=0.1, generator_cpu_s=0.1),
            "rate": rate,
        }

    monkeypatch.setattr(request, "_run", recorded)
    steps = request._ladder(None, None, "grpc", RATES, 50, 3, {}, lambda line: None)
    # 2,000 missed and was run once more; each bisection rung that missed, likewise.
    assert runs == [200, 1000, 2000, 2000, 1500, 1750, 1875, 1875]
    assert [s["rate"] for s in steps] == [200, 1000, 2000, 1500, 1750, 1875]
    assert summarize_ladder("gRPC", steps, RATES, step(1000))["max_sustained_rate"] == 1750


def test_without_a_rung_that_held_there_is_no_ceiling():
    row = summarize_ladder("REST", [step(200, held=False, side="target")], RATES, step(200))
    assert row["max_sustained_rate"] == 0.0 and row["limited_by"] == "target"
    assert ceiling([]) == (None, None)


@pytest.mark.parametrize(
    ("limited_by", "expected"),
    [
        ("generator", True),
        ("ladder end", True),
        ("generator (starts late) on a busy host", True),
        (["generator", "ladder end", "generator"], True),
        (["generator", "target"], False),
        ("target", False),
        ("lanes busy (slow answers)", False),
        ("host", False),
        (None, False),
        ([None, "generator"], False),
        ([], False),
    ],
)
def test_a_ceiling_is_a_lower_bound_only_when_no_ladder_ended_at_the_target(
    limited_by: Any, expected: bool
):
    """One repetition whose ladder the target or its slow answers ended makes the median a
    measurement of the target: it is compared like any other figure."""
    assert lower_bound(limited_by) is expected


def test_a_busy_target_that_still_held_its_rate_counts():
    assert measures_target(step(4000, side="target"))
    assert not measures_target(step(4000, side="generator"))
    assert not measures_target(step(4000, held=False))


def test_every_variant_gets_each_slice_in_turn_and_one_ladder_between_rounds():
    variants = ["rest", "new", "ws", "grpc"]
    actions = plan(variants, 4)
    assert sorted(actions) == sorted(
        [("slice", v) for v in variants] * 4 + [("ladder", v) for v in variants]
    )
    rounds: list[list[str]] = [[]]
    for action, variant in actions:
        if action == "ladder":
            rounds.append([])  # every round is followed by exactly one ladder here
        else:
            rounds[-1].append(variant)
    assert rounds[-1] == []
    # Each round is one slice of every variant, every second round in reverse order.
    assert rounds[:-1] == [variants, variants[::-1]] * 2
    assert [v for a, v in actions if a == "ladder"] == variants


def test_with_fewer_slices_than_variants_the_ladders_still_spread_over_the_rounds():
    actions = plan(["a", "b", "c", "d"], 2)
    assert [a for a, _ in actions] == ["slice"] * 4 + ["ladder"] * 2 + ["slice"] * 4 + [
        "ladder"
    ] * 2
    assert plan(["a"], 1) == [("slice", "a"), ("ladder", "a")]


def test_no_slices_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        measure_request(
            tmp_path, rates=RATES, fixed_slices=0, duration=1, users=1, payload=8, bound_ms=50
        )
    assert list(tmp_path.iterdir()) == []


def run(values_us: list[float], *, target_cpu_s: float, generator_cpu_s: float) -> dict:
    """A run's raw parts as :func:`wirelab_bench.request._run` records them (10 s, 10 s wall)."""
    histogram = LogHistogram()
    for value in values_us:
        histogram.record(value)
    return {
        "rate": 1000,
        "latency": histogram.to_wire(),
        "service": None,
        "ops": len(values_us),
        "total_ops": len(values_us) + 10,
        "measured_s": 9.0,
        "elapsed_s": 10.0,
        "wall_s": 10.0,
        "target_cpu_s": target_cpu_s,
        "generator_cpu_s": generator_cpu_s,
        "host_busy_s": 5.0,
        "dropped": 1,
        "failures": 0,
        "dropped_late": 1,
        "dropped_busy": 0,
        "target_rss_mb": 40.0 + target_cpu_s,
    }


def test_merged_slices_read_as_one_run_over_all_their_samples_and_cpu():
    fast = [300.0] * 60  # a fast phase: 0.3 ms
    slow = [500.0] * 40 + [2000.0] * 3  # a slow one, with the tail in it
    first = run(fast, target_cpu_s=1.0, generator_cpu_s=9.5)
    second = run(slow, target_cpu_s=2.0, generator_cpu_s=5.0)
    merged = figures(merge_runs([first, second]))
    alone = figures(run(fast + slow, target_cpu_s=0, generator_cpu_s=0))
    assert (merged["p50_ms"], merged["p99_ms"]) == (alone["p50_ms"], alone["p99_ms"])
    assert merged["p50_ms"] == pytest.approx(0.3, rel=0.02)
    assert merged["p99_ms"] == pytest.approx(2.0, rel=0.02)
    assert merged["ops"] == 103 and merged["dropped"] == 2
    assert merged["achieved_rps"] == round(103 / 18.0, 1)
    # CPU per operation over every operation of both runs, warm-ups included.
    assert merged["target_cpu_s_per_1k_ops"] == round(1000 * 3.0 / 123, 4)
    # The generator was over its limit in one slice (95%) but not over the two (72.5%).
    assert figures(first)["bottleneck"] == "generator"
    assert merged["generator_cpu_pct"] == 72.5 and merged["bottleneck"] is None
    assert merged["host_busy_pct"] == 50.0
    assert merged["target_rss_mb"] == 42.0  # as after the last slice


@pytest.mark.timeout(180)
def test_a_tiny_real_repetition_interleaves_and_merges_its_slices(tmp_path):
    """Real REST and WebSocket targets and generators on loopback, two variants, two slices."""
    lines: list[str] = []
    out = measure_request(
        tmp_path,
        rates=[100, 200],
        fixed_rate=200,
        fixed_slices=2,
        duration=2,
        users=4,
        payload=16,
        bound_ms=500,
        variants=["rest_keepalive", "ws"],
        log=lines.append,
    )
    slices = [line.split()[1] for line in lines if " fixed " in line]
    assert slices == ["rest_keepalive", "ws", "ws", "rest_keepalive"]
    for row in out.values():
        # The ladder climbs until a rung does not measure the target: on a crowded machine the
        # generator can run out of CPU at 100/s already, and then the ladder ends there.
        rates = [step["rate"] for step in row["steps"]]
        assert rates and rates == [100, 200][: len(rates)]
        if len(rates) < 2:
            assert not measures_target(row["steps"][-1])
        assert row["fixed_rate"] == 200 and len(row["slice_figures"]) == 2
        # The median of the merged slices lies between the slices' own medians.
        p50s = [figures["p50_ms"] for figures in row["slice_figures"]]
        assert min(p50s) - 0.001 <= row["p50_ms"] <= max(p50s) + 0.001
        assert row["bytes_per_op_up"] > 16 and row["bytes_per_op_down"] > 16
        assert row["target_cpu_s_per_1k_ops"] > 0
