"""Threshold expressions: parsing, units, selectors and verdicts."""

from __future__ import annotations

import pytest

from wirelab.metrics.series import RequestSeries, StreamSeries
from wirelab.thresholds import ThresholdError, evaluate, parse_threshold


def _requests(name: str, protocol: str, latencies_ms: list[float], failures: int = 0):
    series = RequestSeries(protocol, name)
    for index, latency in enumerate(latencies_ms):
        series.record(latency * 1000, ok=index >= failures)
    return series


@pytest.mark.parametrize(
    ("expression", "selector", "metric", "op", "value"),
    [
        ("ws echo:p99<50ms", "ws echo", "p99", "<", 50.0),
        ("sse deliver:gaps==0", "sse deliver", "gaps", "==", 0.0),
        ("rest:error_rate<0.1%", "rest", "error_rate", "<", 0.001),
        ("*:p95<200ms", "*", "p95", "<", 200.0),
        ("grpc:lag_p99 <= 1.5s", "grpc", "lag_p99", "<=", 1500.0),
        ("rest:p50<250us", "rest", "p50", "<", 0.25),
        ("rest:error_rate<0.02", "rest", "error_rate", "<", 0.02),
        ("generator:loop_lag_p99<20ms", "generator", "loop_lag_p99", "<", 20.0),
        ("generator:host_lag_max<=0.5s", "generator", "host_lag_max", "<=", 500.0),
        ("generator:cpu_max<85%", "generator", "cpu_max", "<", 85.0),
        ("generator:cpu_mean<50", "generator", "cpu_mean", "<", 50.0),
        ("generator:share_affected<5%", "generator", "share_affected", "<", 0.05),
    ],
)
def test_expressions_parse_with_units(expression, selector, metric, op, value) -> None:
    threshold = parse_threshold(expression)
    assert (threshold.selector, threshold.metric, threshold.op) == (selector, metric, op)
    assert threshold.value == pytest.approx(value)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("ws echo p99<50ms", "is not SELECTOR:METRIC"),
        ("ws echo:p98<50ms", "unknown metric 'p98'"),
        ("ws echo:p99<fast", "is not a number"),
        ("ws echo:p99<5%", "is a duration"),
        ("sse:gaps==0ms", "plain number"),
        ("rest:error_rate<5ms", "ratio or a percentage"),
        ("generator:p99<20ms", "the generator selector takes cpu_max, cpu_mean, loop_lag_p50"),
        ("ws:cpu_max<85%", "cpu_max is the generator's, write generator:cpu_max"),
        ("*:loop_lag_p99<20ms", "write generator:loop_lag_p99"),
        ("generator:cpu_max<85ms", "cpu_max is a percentage of one core"),
        ("generator:loop_lag_p99<20%", "is a duration"),
        ("generator:share_affected<1s", "ratio or a percentage"),
    ],
)
def test_malformed_expressions_name_the_problem(expression, problem) -> None:
    with pytest.raises(ThresholdError, match=problem):
        parse_threshold(expression)


def test_verdicts_per_series_for_star_and_merged_for_protocols() -> None:
    echo = _requests("ws echo", "ws", [5] * 99 + [80])
    post = _requests("rest POST /items", "rest", [10] * 50, failures=1)
    get = _requests("rest GET /items/{id}", "rest", [2] * 50)
    requests = {s.key: s for s in (echo, post, get)}
    thresholds = [
        parse_threshold("*:p50<20ms"),
        parse_threshold("rest:error_rate<1.5%"),
        parse_threshold("rest:error_rate<0.5%"),
        parse_threshold("ws echo:max<50ms"),
    ]
    verdicts = evaluate(thresholds, requests, {}, duration_s=10)
    by = {(v.threshold.expression, v.subject): v for v in verdicts}
    assert all(by[("*:p50<20ms", name)].passed for name in ("ws echo", "rest POST /items"))
    assert by[("rest:error_rate<1.5%", "rest")].observed == pytest.approx(0.01)
    assert by[("rest:error_rate<1.5%", "rest")].passed
    assert not by[("rest:error_rate<0.5%", "rest")].passed
    assert not by[("ws echo:max<50ms", "ws echo")].passed
    assert by[("ws echo:max<50ms", "ws echo")].observed == pytest.approx(80, rel=0.01)


def test_stream_metrics_and_no_data_fails() -> None:
    stream = StreamSeries("sse", "sse deliver", delivered=100, gaps=1, missing=3, reset_lost=2)
    verdicts = evaluate(
        [
            parse_threshold("sse deliver:gaps==0"),
            parse_threshold("sse:lost==0"),
            parse_threshold("grpc deliver:gaps==0"),
        ],
        {},
        {stream.key: stream},
        duration_s=10,
    )
    assert [(v.passed, v.observed) for v in verdicts] == [(False, 1.0), (False, 5.0), (False, None)]
    assert verdicts[2].detail == "no data matched the selector"
