"""A run read at a glance: its verdict, the few figures a reviewer wants first, and its
thresholds grouped by expression.

One definition of that order for every place a person reads a run: ``report.html``, the
terminal summary and the live view in Locust's web UI. Everything here reads the
``summary.json`` form (plain dicts), so it works on a finished run's file as well as on the
live figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..exitcodes import EXIT_GENERATOR_BOUND, EXIT_OK, EXIT_THRESHOLD_FAILED
from ..protocols import PROTOCOL_ORDER
from ..thresholds import ThresholdError, parse_threshold

__all__ = [
    "HELD_REQUESTS",
    "Headline",
    "ProtocolWorst",
    "ThresholdGroup",
    "generator_claim",
    "group_thresholds",
    "headline",
    "is_held",
    "protocol_order",
    "verdict_word",
]

#: Requests the server holds open until there is news (long polling's ``poll long``, see
#: wirelab.users.polling): their "latency" is mostly waiting by design, so they are drawn
#: and ranked apart from the latency of requests that should be fast.
HELD_REQUESTS = frozenset({"poll long"})

_VERDICTS = {
    EXIT_OK: "PASSED",
    EXIT_THRESHOLD_FAILED: "FAILED",
    EXIT_GENERATOR_BOUND: "GENERATOR-BOUND",
}


def verdict_word(exit_code: int) -> str:
    """``PASSED``, ``FAILED``, ``GENERATOR-BOUND`` or ``INCOMPLETE`` for a run's exit code."""
    return _VERDICTS.get(exit_code, "INCOMPLETE")


def generator_claim(generator: Mapping[str, Any]) -> str:
    """What a generator-bound verdict means for the run's figures, in one sentence."""
    distorts = ", ".join(generator.get("distorts") or ()) or "every time it measured"
    share = generator.get("share_affected") or 0.0
    return (
        f"The load generator was saturated in {share:.0%} of the run: its own delay is in "
        f"the {distorts} it measured then."
    )


def is_held(name: str) -> bool:
    """Whether a request series is held open by the server on purpose (long polling)."""
    return name in HELD_REQUESTS


def protocol_order(protocol: str) -> tuple[int, str]:
    """Sort key: the target protocols in their usual order, then any other (``poll``)."""
    if protocol in PROTOCOL_ORDER:
        return (PROTOCOL_ORDER.index(protocol), protocol)
    return (len(PROTOCOL_ORDER), protocol)


# -- thresholds, one row per expression ---------------------------------------------------


@dataclass(slots=True)
class ThresholdGroup:
    """Every verdict of one threshold expression.

    ``subjects``: the verdict rows (``summary.json`` form), failing ones first, each part
    by subject name, so two runs of one scenario list them in the same order. ``worst``:
    the subject furthest on the wrong side of the limit (or closest to it, when all hold).
    """

    expression: str
    subjects: list[dict[str, Any]] = field(default_factory=list)
    worst: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(row["passed"] for row in self.subjects)

    @property
    def failed(self) -> int:
        return sum(not row["passed"] for row in self.subjects)

    @property
    def tied(self) -> bool:
        """Several subjects, all observing the same value (fourteen request names at 0 %
        errors have no worst one)."""
        return len(self.subjects) > 1 and len({row.get("observed") for row in self.subjects}) == 1

    @property
    def worst_subject(self) -> str:
        """The worst subject's name, or ``all N`` when the subjects are :attr:`tied`."""
        return f"all {len(self.subjects)}" if self.tied else str(self.worst.get("subject", ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "passed": self.passed,
            "failed": self.failed,
            "total": len(self.subjects),
            "worst": self.worst,
            "worst_subject": self.worst_subject,
            "subjects": self.subjects,
        }


@lru_cache(maxsize=256)
def _operator(expression: str) -> str | None:
    try:
        return parse_threshold(expression).op
    except ThresholdError:
        return None


def _margin(row: Mapping[str, Any]) -> float:
    """How far the observed value is inside its limit (negative: outside), in its unit."""
    observed, limit = row.get("observed"), row.get("limit")
    if observed is None or limit is None:
        return -math.inf  # no data is worse than any figure
    op = _operator(str(row.get("expression", "")))
    if op in ("<", "<="):
        return float(limit) - float(observed)
    if op in (">", ">="):
        return float(observed) - float(limit)
    if op == "==":
        return -abs(float(observed) - float(limit))
    if op == "!=":
        return abs(float(observed) - float(limit))
    return 0.0 if row.get("passed") else -math.inf


def group_thresholds(rows: Iterable[Mapping[str, Any]]) -> list[ThresholdGroup]:
    """The verdict rows grouped by expression, in the order the expressions were written."""
    groups: dict[str, ThresholdGroup] = {}
    for row in rows:
        expression = str(row["expression"])
        group = groups.get(expression)
        if group is None:
            group = groups[expression] = ThresholdGroup(expression)
        group.subjects.append(dict(row))
    for group in groups.values():
        group.subjects.sort(key=lambda row: (bool(row["passed"]), str(row["subject"])))
        group.worst = min(group.subjects, key=_margin)
    return list(groups.values())


# -- the headline figures -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProtocolWorst:
    """The slowest request and the most lagging stream of one protocol (p99, ms)."""

    protocol: str
    request: str | None = None
    request_p99_ms: float | None = None
    stream: str | None = None
    lag_p99_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Headline:
    """What a reviewer reads before anything else."""

    verdict: str
    exit_code: int
    #: One sentence saying why the verdict is what it is.
    reason: str
    requests: int
    failures: int
    error_rate: float | None
    delivered: int
    lost: int
    worst: list[ProtocolWorst]
    #: ``summary["generator"]`` (``verdict``, ``cpu_max``, ``loop_lag_p99_ms``,
    #: ``share_affected``, ``reasons``...) or ``None`` for a run that did not measure it.
    generator: dict[str, Any] | None
    #: One line per scenario action (deploy, storm, kill, scale) and how it went.
    actions: list[str]
    #: Actions that failed or had not finished when the run ended.
    actions_failed: int
    #: Request series left out of the worst p99: held open on purpose (long polls).
    held: list[str]


def _reason(summary: Mapping[str, Any], groups: list[ThresholdGroup]) -> str:
    incomplete = summary.get("incomplete") or []
    if incomplete:
        more = f" (and {len(incomplete) - 1} more)" if len(incomplete) > 1 else ""
        return f"the run did not complete: {incomplete[0]}{more}"
    failed = [group for group in groups if not group.passed]
    if failed:
        return f"{len(failed)} of {len(groups)} thresholds failed"
    generator = summary.get("generator") or {}
    if generator.get("verdict") == "generator-bound":
        reasons = generator.get("reasons") or []
        first = reasons[0] if reasons else "a worker was over its CPU or loop-lag bound"
        return f"every threshold held, but the generator was the bottleneck: {first}"
    if not groups:
        return "no thresholds were set"
    return f"all {len(groups)} thresholds held"


def _worst_per_protocol(summary: Mapping[str, Any]) -> list[ProtocolWorst]:
    requests: dict[str, tuple[float, str]] = {}
    streams: dict[str, tuple[float, str]] = {}
    for row in summary.get("requests", ()):
        p99 = (row.get("latency_ms") or {}).get("p99")
        if p99 is None or is_held(row["name"]):
            continue
        if row["protocol"] not in requests or p99 > requests[row["protocol"]][0]:
            requests[row["protocol"]] = (p99, row["name"])
    for row in summary.get("streams", ()):
        p99 = (row.get("lag_ms") or {}).get("p99")
        if p99 is None:
            continue
        if row["protocol"] not in streams or p99 > streams[row["protocol"]][0]:
            streams[row["protocol"]] = (p99, row["name"])
    worst = []
    for protocol in sorted({*requests, *streams}, key=protocol_order):
        request, stream = requests.get(protocol), streams.get(protocol)
        worst.append(
            ProtocolWorst(
                protocol,
                request=request[1] if request else None,
                request_p99_ms=request[0] if request else None,
                stream=stream[1] if stream else None,
                lag_p99_ms=stream[0] if stream else None,
            )
        )
    return worst


def _action_lines(actions: Iterable[Mapping[str, Any]]) -> list[str]:
    lines = []
    for action in actions:
        what = f"{action.get('action')} {action.get('service')}"
        at = f"at {float(action.get('at_s', 0)):.1f}s"
        if not action.get("ok", True):
            lines.append(f"{what} {at} failed: {action.get('error', '')}")
            continue
        back = [
            f"{protocol} {float(figures['clients_back_99_s']):.1f}s"
            for protocol, figures in (action.get("protocols") or {}).items()
            if figures.get("clients_back_99_s") is not None
        ]
        line = f"{what} {at} took {float(action.get('duration_s', 0)):.1f}s"
        if back:
            line += "; 99% of clients back: " + ", ".join(back)
        lines.append(line)
    return lines


def headline(summary: Mapping[str, Any]) -> Headline:
    """The verdict and the headline figures of a run (``summary.json`` form)."""
    code = int(summary["exit_code"])
    requests = summary.get("requests", ())
    count = sum(int(row["count"]) for row in requests)
    failures = sum(int(row["failures"]) for row in requests)
    streams = summary.get("streams", ())
    actions = (summary.get("deploy") or {}).get("actions", ())
    return Headline(
        verdict=verdict_word(code),
        exit_code=code,
        reason=_reason(summary, group_thresholds(summary.get("thresholds", ()))),
        requests=count,
        failures=failures,
        error_rate=failures / count if count else None,
        delivered=sum(int(row["delivered"]) for row in streams),
        lost=sum(int(row["missing"]) + int(row.get("reset_lost", 0)) for row in streams),
        worst=_worst_per_protocol(summary),
        generator=summary.get("generator") or None,
        actions=_action_lines(actions),
        actions_failed=sum(not action.get("ok", True) for action in actions),
        held=sorted(row["name"] for row in requests if is_held(row["name"])),
    )
