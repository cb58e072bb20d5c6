"""LogHistogram: ≤1% relative error on quantiles from 1 µs to 10 min, exact merges."""

from __future__ import annotations

import json
import math
import random

import pytest

from wirelab.metrics.histogram import LogHistogram

QUANTILES = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0]
TEN_MINUTES_US = 600e6


def exact_quantile(ordered: list[float], q: float) -> float:
    """The sample at rank ``q·(n-1)`` rounded down, the rank rule the histogram uses."""
    return ordered[math.floor(q * (len(ordered) - 1))]


def distributions() -> dict[str, list[float]]:
    rng = random.Random(20240501)
    return {
        "uniform_1ms_100ms": [rng.uniform(1e3, 1e5) for _ in range(20_000)],
        "lognormal_around_5ms": [rng.lognormvariate(math.log(5e3), 1.0) for _ in range(20_000)],
        "bimodal_90pct_5ms_10pct_50ms": [
            rng.gauss(5e3, 300) if rng.random() < 0.9 else rng.gauss(5e4, 2e3)
            for _ in range(20_000)
        ],
        "pareto_tail": [1e3 * rng.paretovariate(1.2) for _ in range(20_000)],
        "extremes_1us_to_10min": [1.0, TEN_MINUTES_US]
        + [10 ** rng.uniform(0, math.log10(TEN_MINUTES_US)) for _ in range(20_000)],
        "all_one_microsecond": [1.0] * 1000,
    }


@pytest.mark.parametrize("name", list(distributions()))
def test_quantiles_are_within_one_percent_of_the_exact_sorted_sample_quantiles(name):
    samples = distributions()[name]
    histogram = LogHistogram()
    for value in samples:
        histogram.record(value)
    ordered = sorted(samples)
    estimated = histogram.quantiles(QUANTILES)
    for q in QUANTILES:
        exact = exact_quantile(ordered, q)
        assert estimated[q] == pytest.approx(exact, rel=0.01), (name, q)
    assert histogram.count == len(samples)
    assert histogram.min == ordered[0] and histogram.max == ordered[-1]


def test_extremes_one_microsecond_and_ten_minutes_are_reported_exactly_at_the_ends():
    histogram = LogHistogram()
    histogram.record(1.0)
    histogram.record(TEN_MINUTES_US)
    assert histogram.quantile(0.0) == 1.0
    assert histogram.quantile(1.0) == TEN_MINUTES_US
    assert histogram.quantile(0.5) == pytest.approx(1.0, rel=0.01)


def test_merging_parts_equals_the_histogram_of_the_whole_bucket_for_bucket():
    samples = distributions()["extremes_1us_to_10min"] + [0.2, 0.0]  # and sub-µs "zeros"
    whole = LogHistogram()
    parts = [LogHistogram() for _ in range(5)]
    for i, value in enumerate(samples):
        whole.record(value)
        parts[i % 5].record(value)
    merged = LogHistogram()
    for part in parts:
        merged.merge(part)
    assert merged.buckets == whole.buckets
    assert (merged.zeros, merged.count, merged.min, merged.max) == (
        whole.zeros,
        whole.count,
        whole.min,
        whole.max,
    )
    assert merged.sum == pytest.approx(whole.sum)
    assert merged.quantiles(QUANTILES) == whole.quantiles(QUANTILES)


def test_merging_histograms_of_different_precision_is_refused():
    with pytest.raises(ValueError):
        LogHistogram(0.01).merge(LogHistogram(0.02))


def test_wire_form_survives_json_and_round_trips_exactly():
    histogram = LogHistogram()
    for value in distributions()["lognormal_around_5ms"][:2000]:
        histogram.record(value)
    histogram.record(0.1)
    back = LogHistogram.from_wire(json.loads(json.dumps(histogram.to_wire())))
    assert back.buckets == histogram.buckets
    assert (back.zeros, back.count, back.sum, back.min, back.max) == (
        histogram.zeros,
        histogram.count,
        histogram.sum,
        histogram.min,
        histogram.max,
    )
    empty = LogHistogram.from_wire(LogHistogram().to_wire())
    assert not empty and empty.quantile(0.99) is None
