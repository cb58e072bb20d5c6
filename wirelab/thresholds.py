"""Threshold expressions that gate a run: ``SELECTOR:METRIC OP VALUE``.

Examples: ``ws echo:p99<50ms``, ``sse deliver:gaps==0``, ``rest:error_rate<0.1%``,
``*:p95<200ms``, ``grpc deliver:lag_p99<=250ms``.

The selector is a series name (``ws echo``), a protocol (``rest``, ``sse``, ``ws``,
``grpc``, ``poll``: every series of it, merged), or ``*`` (every series, each on its own).
Request metrics apply to request/response series, stream metrics to stream series; a
selector that matches no series with data fails the threshold ("no data") rather than
passing silently.

The selector ``generator`` judges the load generator itself (the figures of
``summary["generator"]``, see :mod:`wirelab.metrics.generator`): ``cpu_max`` and
``cpu_mean`` (% of one core), ``loop_lag_p50``, ``loop_lag_p99``, ``loop_lag_max``,
``host_lag_p99``, ``host_lag_max`` (durations) and ``share_affected`` (a ratio), e.g.
``generator:loop_lag_p99<20ms``, ``generator:cpu_max<85%``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .metrics.histogram import LogHistogram
from .metrics.series import RequestSeries, SeriesKey, StreamSeries
from .protocols import PROTOCOL_ORDER
from .units import parse_duration, parse_rate, parse_ratio, split_quantity


class ThresholdError(ValueError):
    """A malformed threshold expression; the message says what is wrong."""


_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}

#: Request metrics → (kind of value). "duration" values are compared in milliseconds.
REQUEST_METRICS = {
    "p50": "duration",
    "p90": "duration",
    "p95": "duration",
    "p99": "duration",
    "p999": "duration",
    "max": "duration",
    "mean": "duration",
    "error_rate": "ratio",
    "failures": "count",
    "count": "count",
    "dropped": "count",
    "rps": "rate",
}

STREAM_METRICS = {
    "delivered": "count",
    "gaps": "count",
    "missing": "count",
    "duplicates": "count",
    "out_of_order": "count",
    "resets": "count",
    "reset_lost": "count",
    "reconnects": "count",
    "connect_failures": "count",
    "lost": "count",
    "lag_p50": "duration",
    "lag_p90": "duration",
    "lag_p95": "duration",
    "lag_p99": "duration",
    "lag_max": "duration",
    "reconnect_p50": "duration",
    "reconnect_p99": "duration",
    "reconnect_max": "duration",
}

#: The selector of the generator's own figures.
GENERATOR_SELECTOR = "generator"
#: Generator metrics → (kind of value, key of ``summary["generator"]``).
GENERATOR_METRICS = {
    "cpu_max": ("percent", "cpu_max"),
    "cpu_mean": ("percent", "cpu_mean"),
    "loop_lag_p50": ("duration", "loop_lag_p50_ms"),
    "loop_lag_p99": ("duration", "loop_lag_p99_ms"),
    "loop_lag_max": ("duration", "loop_lag_max_ms"),
    "host_lag_p99": ("duration", "host_lag_p99_ms"),
    "host_lag_max": ("duration", "host_lag_max_ms"),
    "share_affected": ("ratio", "share_affected"),
}

_EXPRESSION = re.compile(
    r"^(?P<selector>.+?):(?P<metric>[a-z0-9_]+)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>.+)$"
)
#: Protocol selectors: the targets' protocols, and REST polling's own series.
_PROTOCOLS = {*PROTOCOL_ORDER, "poll"}


@dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed expression. ``value`` is in ms for durations, a ratio for rates."""

    expression: str
    selector: str
    metric: str
    op: str
    value: float

    @property
    def is_stream_metric(self) -> bool:
        return self.metric in STREAM_METRICS

    @property
    def kind(self) -> str:
        return _kind(self.metric)


def _kind(metric: str) -> str:
    if metric in GENERATOR_METRICS:
        return GENERATOR_METRICS[metric][0]
    return STREAM_METRICS.get(metric) or REQUEST_METRICS[metric]


@dataclass(slots=True)
class Verdict:
    """The outcome of one threshold over one series (or merged group)."""

    threshold: Threshold
    subject: str
    observed: float | None
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {
            "expression": self.threshold.expression,
            "subject": self.subject,
            "metric": self.threshold.metric,
            "observed": self.observed,
            "limit": self.threshold.value,
            "passed": self.passed,
            "detail": self.detail,
        }


def parse_threshold(expression: str) -> Threshold:
    """Parse ``SELECTOR:METRIC OP VALUE``; :class:`ThresholdError` names the problem."""
    text = expression.strip()
    match = _EXPRESSION.match(text)
    if match is None:
        raise ThresholdError(
            f"threshold {expression!r} is not SELECTOR:METRIC<OP>VALUE (e.g. 'ws echo:p99<50ms')"
        )
    selector = match["selector"].strip()
    metric = match["metric"]
    if metric not in REQUEST_METRICS and metric not in STREAM_METRICS | GENERATOR_METRICS:
        known = ", ".join([*REQUEST_METRICS, *STREAM_METRICS, *GENERATOR_METRICS])
        raise ThresholdError(
            f"threshold {expression!r}: unknown metric {metric!r} (known: {known})"
        )
    _check_generator(expression, selector, metric)
    kind = _kind(metric)
    value = _limit(expression, metric, kind, match["value"].strip())
    return Threshold(text, selector, metric, match["op"], value)


#: How each kind of limit is read (:mod:`wirelab.units`) and what it expects.
_LIMITS: dict[str, tuple[Callable[[str], float], str]] = {
    # A bare number of a duration is milliseconds, the unit durations are compared in.
    "duration": (lambda text: parse_duration(text, default_unit="ms") * 1000, "a duration"),
    "ratio": (parse_ratio, "a ratio or a percentage"),
    "rate": (lambda text: parse_rate(text, allow_zero=True), "a rate (500/s)"),
    "count": (float, "a plain number"),
    "percent": (lambda text: float(text.removesuffix("%")), "a percentage of one core (85%)"),
}


def _limit(expression: str, metric: str, kind: str, text: str) -> float:
    """The limit in the metric's unit: ms for durations, a ratio, per second, or a count."""

    def problem(what: str) -> ThresholdError:
        return ThresholdError(f"threshold {expression!r}: {what}")

    try:
        _, unit = split_quantity(text)
    except ValueError:
        raise problem(f"{text!r} is not a number") from None
    if kind == "duration" and unit == "%":
        raise problem(f"{metric} is a duration, not a percentage")
    if kind == "count" and unit:
        raise problem(f"{metric} is a plain number, no unit")
    if kind == "percent" and unit not in ("", "%"):
        raise problem(f"{metric} is a percentage of one core")
    parse, expected = _LIMITS.get(kind, _LIMITS["count"])
    try:
        return parse(text)
    except ValueError:
        raise problem(f"{metric} takes {expected}, not {text!r}") from None


def _check_generator(expression: str, selector: str, metric: str) -> None:
    if selector == GENERATOR_SELECTOR and metric not in GENERATOR_METRICS:
        raise ThresholdError(
            f"threshold {expression!r}: the generator selector takes {', '.join(GENERATOR_METRICS)}"
        )
    if selector != GENERATOR_SELECTOR and metric in GENERATOR_METRICS:
        raise ThresholdError(
            f"threshold {expression!r}: {metric} is the generator's, write generator:{metric}"
        )


def evaluate(
    thresholds: list[Threshold],
    requests: dict[SeriesKey, RequestSeries],
    streams: dict[SeriesKey, StreamSeries],
    *,
    duration_s: float,
    generator: dict[str, Any] | None = None,
) -> list[Verdict]:
    """Judge every threshold against a run's totals; one verdict per subject.

    ``generator`` is the run's generator verdict (``summary["generator"]``), which the
    ``generator`` selector judges.
    """
    verdicts: list[Verdict] = []
    for threshold in thresholds:
        if threshold.selector == GENERATOR_SELECTOR:
            verdicts.append(_judge_generator(threshold, generator or {}))
            continue
        pool = streams if threshold.is_stream_metric else requests
        groups = _select(threshold.selector, pool)
        if not groups:
            verdicts.append(
                Verdict(threshold, threshold.selector, None, False, "no data matched the selector")
            )
            continue
        for subject, members in groups:
            observed = _observe(threshold.metric, members, duration_s)
            if observed is None:
                verdicts.append(Verdict(threshold, subject, None, False, "no samples"))
                continue
            passed = _OPERATORS[threshold.op](observed, threshold.value)
            verdicts.append(
                Verdict(threshold, subject, observed, passed, _describe(threshold, observed))
            )
    return verdicts


def _judge_generator(threshold: Threshold, generator: dict[str, Any]) -> Verdict:
    observed = generator.get(GENERATOR_METRICS[threshold.metric][1])
    if observed is None:
        return Verdict(threshold, GENERATOR_SELECTOR, None, False, "the generator was not measured")
    observed = float(observed)
    passed = _OPERATORS[threshold.op](observed, threshold.value)
    return Verdict(threshold, GENERATOR_SELECTOR, observed, passed, _describe(threshold, observed))


def _select(selector: str, pool: dict) -> list[tuple[str, list]]:
    if selector == "*":
        return [(series.name, [series]) for series in pool.values()]
    named = [series for series in pool.values() if series.name == selector]
    if named:
        return [(selector, named)]
    if selector in _PROTOCOLS:
        members = [series for series in pool.values() if series.protocol == selector]
        return [(selector, members)] if members else []
    return []


def _merged_histogram(members: list, attribute: str) -> LogHistogram:
    merged = LogHistogram()
    for series in members:
        merged.merge(getattr(series, attribute))
    return merged


def _observe(metric: str, members: list, duration_s: float) -> float | None:  # noqa: PLR0911
    if metric in STREAM_METRICS:
        if metric == "lost":
            return float(sum(s.missing + s.reset_lost for s in members))
        if metric.startswith(("lag_", "reconnect_")):
            attribute, _, stat = metric.partition("_")
            histogram = _merged_histogram(
                members, "lag" if attribute == "lag" else "reconnect_time"
            )
            return _stat_ms(histogram, stat)
        return float(sum(getattr(s, metric) for s in members))
    if metric in {"count", "failures", "dropped"}:
        return float(sum(getattr(s, metric) for s in members))
    if metric == "error_rate":
        count = sum(s.count for s in members)
        return sum(s.failures for s in members) / count if count else None
    if metric == "rps":
        return sum(s.count for s in members) / duration_s if duration_s > 0 else None
    return _stat_ms(_merged_histogram(members, "latency"), metric)


def _stat_ms(histogram: LogHistogram, stat: str) -> float | None:
    if not histogram:
        return None
    if stat == "max":
        return histogram.max / 1000
    if stat == "mean":
        return histogram.mean / 1000
    quantile = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}[stat]
    value = histogram.quantile(quantile)
    return None if value is None else value / 1000


def _describe(threshold: Threshold, observed: float) -> str:
    if threshold.kind == "duration":
        return f"{observed:.2f} ms {threshold.op} {threshold.value:g} ms"
    if threshold.kind == "ratio":
        return f"{observed:.4%} {threshold.op} {threshold.value:.4%}"
    if threshold.kind == "percent":
        return f"{observed:.1f}% {threshold.op} {threshold.value:g}%"
    return f"{observed:g} {threshold.op} {threshold.value:g}"
