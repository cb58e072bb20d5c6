"""Repetitions, medians, spread, and lag percentiles out of the lab's histograms."""

from __future__ import annotations

import pytest

from wirelab.metrics.histogram import LogHistogram
from wirelab_bench.push import stream_totals
from wirelab_bench.stats import (
    histogram_ms,
    merge_wire,
    reproducibility,
    spread_pct,
    summarize,
    summarize_runs,
)


def test_summary_of_repetitions_is_median_range_and_spread():
    summary = summarize([10.0, 12.0, 11.0])
    assert summary == {"median": 11.0, "min": 10.0, "max": 12.0, "spread_pct": 18.2, "n": 3}


def test_even_number_of_repetitions_takes_the_mean_of_the_middle_two():
    assert summarize([1, 2, 3, 10])["median"] == 2.5


def test_repetitions_without_a_number_are_left_out():
    assert summarize([None, 4.0])["n"] == 1
    assert summarize([None])["median"] is None


def test_spread_is_range_over_median_in_percent():
    assert spread_pct([100, 100]) == 0.0
    assert spread_pct([90, 100, 110]) == pytest.approx(20.0)


def test_summarize_runs_recurses_and_keeps_agreeing_labels():
    runs = [
        {"ws": {"label": "WebSocket", "p50_ms": 1.0, "limited_by": "target"}},
        {"ws": {"label": "WebSocket", "p50_ms": 3.0, "limited_by": None}},
    ]
    summary = summarize_runs(runs)
    assert summary["ws"]["label"] == "WebSocket"
    assert summary["ws"]["p50_ms"]["median"] == 2.0
    assert summary["ws"]["limited_by"] == ["target", None]


def _lags(values_ms: list[float]) -> dict:
    histogram = LogHistogram()
    for value in values_ms:
        histogram.record(value * 1000)  # µs, as the users record lag
    return histogram.to_wire()


def test_lag_percentiles_come_out_in_ms_within_the_histogram_error():
    lags = [float(v) for v in range(1, 101)]  # 1..100 ms
    figures = histogram_ms(_lags(lags))
    assert figures["n"] == 100
    assert figures["p50"] == pytest.approx(50.5, rel=0.02)
    assert figures["p99"] == pytest.approx(99, rel=0.02)


def test_lag_of_several_streams_is_merged_exactly_before_percentiles():
    fast = {"delivered": 90, "gaps": 0, "lag": _lags([1.0] * 90)}
    slow = {"delivered": 10, "gaps": 1, "lag": _lags([200.0] * 10)}
    totals = stream_totals({"sse a": fast, "sse b": slow})
    assert totals["delivered"] == 100
    assert totals["gaps"] == 1
    assert totals["lag"]["p50"] == pytest.approx(1.0, rel=0.01)
    assert totals["lag"]["p99"] == pytest.approx(200.0, rel=0.01)
    assert merge_wire([None, {}]) is None


def test_empty_lag_has_no_percentiles():
    assert histogram_ms(None) == {"n": 0, "p50": None, "p99": None}


def test_two_runs_are_compared_on_their_medians():
    first = summarize_runs([{"ws": {"p50_ms": 1.0, "label": "WS"}}, {"ws": {"p50_ms": 1.2}}])
    second = summarize_runs([{"ws": {"p50_ms": 1.3}}])
    result = reproducibility(first, second, ["ws.p50_ms", "ws.missing"])
    assert result["compared"] == 1
    assert result["rows"]["ws.p50_ms"] == {
        "first": 1.1,
        "second": 1.3,
        "diff_pct": 16.7,
        "within": False,
    }
    assert result["within"] == 0


def test_a_difference_below_the_resolution_is_within():
    first = summarize_runs([{"ws": {"bytes_per_event_up": 0.1, "p99_ms": 0.1}}])
    second = summarize_runs([{"ws": {"bytes_per_event_up": 0.0, "p99_ms": 0.0}}])
    keys = ["ws.bytes_per_event_up", "ws.p99_ms"]
    result = reproducibility(first, second, keys, resolution={"*bytes_per_*": 1.0})
    assert result["rows"]["ws.bytes_per_event_up"]["diff_pct"] == 200.0
    assert result["rows"]["ws.bytes_per_event_up"]["within"] is True
    # A pattern that does not match leaves the percentage rule alone.
    assert result["rows"]["ws.p99_ms"]["within"] is False
    assert result["within"] == 1
