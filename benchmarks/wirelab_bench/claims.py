"""The claims of the reference articles, beside what this machine measured.

Each claim becomes a number that can be measured here — usually a ratio on the same work
(REST p50 / WebSocket p50: claimed 3.0) — computed per repetition, then summarised (median
and range). The verdict:

- ``held``: the median reaches the claim (within ``tolerance``), or lies in a claimed range;
- ``not held``: the median does not even go the claimed way (a ratio claimed above 1 whose
  median is at or below 1, or the reverse), or the value is outside a claimed range;
- ``depends``: the direction is right but the size is not there, or the figure is set by
  something other than the protocol (a CPU bottleneck, the event rate) — the note says what.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .stats import summarize

__all__ = ["CLAIMS", "Claim", "build_claims", "verdict"]

HELD, NOT_HELD, DEPENDS = "held", "not held", "depends"
NO_DATA = "no data"


@dataclass(frozen=True, slots=True)
class Claim:
    source: str
    text: str
    #: What is measured, in words.
    measure: str
    #: ``ratio`` (claimed is a ratio, direction matters), ``at_least``, or ``range``.
    kind: str
    claimed: float | tuple[float, float]
    #: One repetition's figures -> the measured value (or ``None``).
    compute: Callable[[dict[str, Any]], float | None]
    #: One repetition's figures -> why the figure "depends" (or ``None``).
    condition: Callable[[dict[str, Any]], str | None] | None = None
    tolerance: float = 0.25
    #: When ``condition`` gives a reason, the figure can neither hold nor refute the claim
    #: (a ratio of two rate ceilings where one was not found is no ratio of capacities).
    inconclusive: bool = False


def verdict(
    kind: str,
    claimed: float | tuple[float, float],
    measured: dict[str, Any],
    *,
    tolerance: float = 0.25,
    depends_on: str | None = None,
    inconclusive: bool = False,
) -> str:
    """held / not held / depends for a summary (median, min, max) of the measured values.

    ``inconclusive``: the reason in ``depends_on`` leaves the figure unable to refute the
    claim either, so it is *depends* whichever way it points.
    """
    median = measured.get("median")
    if median is None:
        return NO_DATA
    if depends_on and inconclusive:
        return DEPENDS
    if kind == "range":
        assert isinstance(claimed, tuple)
        lo, hi = claimed
        return HELD if lo * (1 - tolerance) <= median <= hi * (1 + tolerance) else NOT_HELD
    assert isinstance(claimed, int | float)
    if kind == "at_least":
        if median >= claimed * (1 - tolerance):
            return DEPENDS if depends_on else HELD
        return DEPENDS if depends_on else NOT_HELD
    # A ratio: claimed > 1 says "the first is bigger", < 1 "smaller".
    if claimed >= 1:
        reached = median >= claimed / (1 + tolerance)
        wrong_way = median <= 1.0
    else:
        reached = median <= claimed * (1 + tolerance)
        wrong_way = median >= 1.0
    if wrong_way:
        return NOT_HELD
    if reached and not depends_on:
        return HELD
    return DEPENDS


def _get(figures: dict[str, Any], *path: str) -> Any:
    value: Any = figures
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b in (None, 0):
        return None
    return a / b


def _limited(figures: dict[str, Any], *variants: str) -> str | None:
    sides = {variant: _get(figures, "request", variant, "limited_by") for variant in variants}
    bound = {variant: side for variant, side in sides.items() if side not in (None, "ladder end")}
    if bound:
        return "ceiling set by CPU, not the protocol: " + json.dumps(bound)
    if any(side == "ladder end" for side in sides.values()):
        return "a variant reached the top of the rate ladder"
    return None


def _poll_rate(figures: dict[str, Any]) -> str | None:
    rate = _get(figures, "push_settings", "feed_rate")
    return f"depends on the event rate (measured at {rate} events/s per client)"


CLAIMS: list[Claim] = [
    Claim(
        "000",
        "REST P50 12 ms vs WebSockets P50 4 ms",
        "REST keep-alive p50 / WebSocket echo p50",
        "ratio",
        3.0,
        lambda f: _ratio(
            _get(f, "request", "rest_keepalive", "p50_ms"), _get(f, "request", "ws", "p50_ms")
        ),
    ),
    Claim(
        "000",
        "REST P99 45 ms vs WebSockets P99 15 ms",
        "REST keep-alive p99 / WebSocket echo p99",
        "ratio",
        3.0,
        lambda f: _ratio(
            _get(f, "request", "rest_keepalive", "p99_ms"), _get(f, "request", "ws", "p99_ms")
        ),
    ),
    Claim(
        "000",
        "~140k ops/s WebSockets vs ~85k ops/s REST",
        "WebSocket / REST keep-alive max sustained rate",
        "ratio",
        140 / 85,
        lambda f: _ratio(
            _get(f, "request", "ws", "max_sustained_rps"),
            _get(f, "request", "rest_keepalive", "max_sustained_rps"),
        ),
        lambda f: _limited(f, "ws", "rest_keepalive"),
        inconclusive=True,
    ),
    Claim(
        "000",
        "REST 88% CPU at 85k ops/s vs WebSockets 62% at 140k",
        "server CPU per op, REST keep-alive / WebSocket (claimed (0.88/85k)/(0.62/140k))",
        "ratio",
        (0.88 / 85) / (0.62 / 140),
        lambda f: _ratio(
            _get(f, "request", "rest_keepalive", "target_cpu_s_per_1k_ops"),
            _get(f, "request", "ws", "target_cpu_s_per_1k_ops"),
        ),
    ),
    Claim(
        "000",
        "REST memory 45→210 MB vs WebSockets 22→65 MB under load",
        "server RSS after the fixed-rate run, REST / WebSocket (claimed 210/65)",
        "ratio",
        210 / 65,
        lambda f: _ratio(
            _get(f, "request", "rest_keepalive", "target_rss_mb"),
            _get(f, "request", "ws", "target_rss_mb"),
        ),
    ),
    Claim(
        "001",
        "each WebSocket message has 2-14 bytes of framing",
        "WebSocket frame header bytes per pushed event, read off the socket",
        "range",
        (2.0, 14.0),
        lambda f: _get(f, "push", "ws", "frame_overhead_bytes"),
        tolerance=0.0,
    ),
    Claim(
        "001",
        "…compared to hundreds of bytes for HTTP headers",
        "bytes per echo round trip, REST keep-alive − WebSocket (same JSON body)",
        "at_least",
        100.0,
        lambda f: (
            None
            if _get(f, "request", "ws", "bytes_per_op_up") is None
            or _get(f, "request", "rest_keepalive", "bytes_per_op_up") is None
            else (
                _get(f, "request", "rest_keepalive", "bytes_per_op_up")
                + _get(f, "request", "rest_keepalive", "bytes_per_op_down")
                - _get(f, "request", "ws", "bytes_per_op_up")
                - _get(f, "request", "ws", "bytes_per_op_down")
            )
        ),
        tolerance=0.0,
    ),
    Claim(
        "004",
        "short-poll at 1-5 s: 95%+ of requests return empty",
        "short poll (1 s) empty polls, %",
        "at_least",
        95.0,
        lambda f: _get(f, "push", "short_poll", "wasted_pct"),
        _poll_rate,
        tolerance=0.0,
    ),
    Claim(
        "004",
        "short-poll at 1-5 s: 95%+ of requests return empty (quiet feed)",
        "short poll (1 s) empty polls at the quiet feed rate, %",
        "at_least",
        95.0,
        lambda f: _get(f, "push_quiet", "short_poll", "wasted_pct"),
        lambda f: f"at {_get(f, 'push_quiet_settings', 'feed_rate')} events/s",
        tolerance=0.0,
    ),
    Claim(
        "004",
        "long-poll: 10x reduction in QPS for the same freshness",
        "requests per delivered event, short poll / long poll",
        "ratio",
        10.0,
        lambda f: _ratio(
            _get(f, "push", "short_poll", "requests_per_event"),
            _get(f, "push", "long_poll", "requests_per_event"),
        ),
        _poll_rate,
    ),
    Claim(
        "004",
        "long-poll: 10x reduction in QPS for the same freshness (quiet feed)",
        "requests per delivered event at the quiet feed rate, short poll / long poll",
        "ratio",
        10.0,
        lambda f: _ratio(
            _get(f, "push_quiet", "short_poll", "requests_per_event"),
            _get(f, "push_quiet", "long_poll", "requests_per_event"),
        ),
        lambda f: f"at {_get(f, 'push_quiet_settings', 'feed_rate')} events/s",
    ),
    Claim(
        "004",
        "long polling is structurally SSE with worse ergonomics (costs more per event)",
        "bytes on the wire per event, long poll / SSE",
        "ratio",
        1.0 + 1e-9,
        lambda f: _ratio(
            _get(f, "push", "long_poll", "bytes_per_event_total"),
            _get(f, "push", "sse", "bytes_per_event_total"),
        ),
        tolerance=0.0,
    ),
    Claim(
        "004",
        "…and server CPU (long poll vs SSE)",
        "server CPU per 1,000 events, long poll / SSE",
        "ratio",
        1.0 + 1e-9,
        lambda f: _ratio(
            _get(f, "push", "long_poll", "target_cpu_s_per_1k_events"),
            _get(f, "push", "sse", "target_cpu_s_per_1k_events"),
        ),
        tolerance=0.0,
    ),
    Claim(
        "003",
        "a connection per request adds latency vs one persistent connection",
        "REST new-connection p50 / keep-alive p50",
        "ratio",
        1.0 + 1e-9,
        lambda f: _ratio(
            _get(f, "request", "rest_new_conn", "p50_ms"),
            _get(f, "request", "rest_keepalive", "p50_ms"),
        ),
        tolerance=0.0,
    ),
]


def build_claims(repetitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The claims table: each claim, the measured median and range, and the verdict."""
    rows = []
    for claim in CLAIMS:
        values = [claim.compute(figures) for figures in repetitions]
        measured = summarize(values)
        reasons = (
            {claim.condition(figures) for figures in repetitions} if claim.condition else set()
        )
        reasons.discard(None)
        depends_on = "; ".join(sorted(reasons)) or None
        rows.append(
            {
                "source": claim.source,
                "claim": claim.text,
                "measure": claim.measure,
                "claimed": list(claim.claimed)
                if isinstance(claim.claimed, tuple)
                else round(claim.claimed, 3),
                "measured": None if measured["median"] is None else round(measured["median"], 3),
                "min": None if measured["min"] is None else round(measured["min"], 3),
                "max": None if measured["max"] is None else round(measured["max"], 3),
                "n": measured["n"],
                "verdict": verdict(
                    claim.kind,
                    claim.claimed,
                    measured,
                    tolerance=claim.tolerance,
                    depends_on=depends_on,
                    inconclusive=claim.inconclusive,
                ),
                "note": depends_on,
            }
        )
    return rows
