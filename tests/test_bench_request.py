"""The request/response ladder's figures: which step is the fixed-rate one, and which steps
may set a protocol's ceiling (correctness on recorded steps, never speed)."""

from __future__ import annotations

from typing import Any

import pytest

from wirelab.bench.request import measure_request, measures_target, summarize_ladder

RATES = [200, 1000, 2000, 4000]


def step(rate: float, *, held: bool = True, side: str | None = None, **extra: Any) -> dict:
    """A step as :func:`wirelab.bench.request._step` records it (the figures the ladder reads)."""
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


def test_latency_cpu_and_bytes_come_from_the_fixed_rate_step_not_the_first():
    steps = [step(200), step(1000, bytes_per_op_up=128.0), step(2000), step(4000)]
    row = summarize_ladder("REST", steps, RATES, fixed_rate=1000)
    assert row["fixed_rate"] == 1000
    assert (row["p50_ms"], row["p99_ms"]) == (1.0, 10.0)
    assert row["target_cpu_s_per_1k_ops"] == 1 / 1000
    assert row["bytes_per_op_up"] == 128.0


def test_a_ladder_held_to_the_top_is_limited_by_its_end():
    steps = [step(rate) for rate in RATES]
    row = summarize_ladder("WS", steps, RATES, fixed_rate=1000)
    assert (row["max_sustained_rate"], row["max_sustained_rps"]) == (4000, 4000.5)
    assert row["ladder_top_reached"] and row["limited_by"] == "ladder end"


def test_a_step_the_generator_could_not_drive_does_not_raise_the_ceiling_even_if_held():
    # Measured: gRPC's 4,000 req/s rung held in some repetitions and failed in others,
    # with the generator at 97-99% of its core every time; the ceiling it sets is the
    # generator's, so it is the rung below that counts, and "generator" is named.
    for held in (True, False):
        steps = [step(200), step(1000), step(2000), step(4000, held=held, side="generator")]
        row = summarize_ladder("gRPC", steps, RATES, fixed_rate=1000)
        assert row["max_sustained_rate"] == 2000
        assert row["limited_by"] == "generator"
        assert not row["ladder_top_reached"]


def test_a_step_the_target_could_not_hold_sets_the_ceiling_and_names_the_target():
    steps = [step(200), step(1000), step(2000, held=False, side="target")]
    row = summarize_ladder("REST", steps, RATES, fixed_rate=1000)
    assert row["max_sustained_rate"] == 1000
    assert row["limited_by"] == "target"


def test_a_busy_target_that_still_held_its_rate_counts():
    assert measures_target(step(4000, side="target"))
    assert not measures_target(step(4000, side="generator"))
    assert not measures_target(step(4000, held=False))


def test_a_fixed_rate_outside_the_ladder_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(ValueError, match="fixed_rate 300"):
        measure_request(
            tmp_path, rates=RATES, fixed_rate=300, duration=1, users=1, payload=8, bound_ms=50
        )
    assert list(tmp_path.iterdir()) == []
