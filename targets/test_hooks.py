"""TEST HOOKS: a known service-time distribution and periodic stalls on the echo routes.

A load tester's latency figures can only be judged against a server whose latency is known.
``wirelab targets serve rest --test-latency 85%:5ms,15%:50ms`` holds each ``POST /echo``
for a service time drawn from that mix; ``--test-stall 1s/5s`` stops answering for the last
second of every five (a GC pause, a failover), which is what coordinated omission hides.

Ground truth is measured, not assumed: the target records how long it actually held each
request (timer overshoot included) and ``GET /stats`` reports exact percentiles of those
holds under ``test_hooks``. The load side's reported percentiles must match them within
the client's own overhead.

The mix is deterministic: request n takes the part that the golden-ratio sequence
``frac(n * 0.618...)`` falls into, so any run of N requests has each part's share to
within a few requests, independent of how clients interleave (a random draw would leave
the p90 of a few thousand requests a coin toss when it sits on a boundary).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass

from ..units import parse_duration

__all__ = ["HookError", "LatencyMix", "StallPlan", "TestHooks"]

#: Holds kept for the exact percentiles; beyond this the oldest are forgotten.
MAX_RECORDED = 1_000_000
_GOLDEN = (math.sqrt(5) - 1) / 2
_PART = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*:\s*(\S+)\s*$")


class HookError(ValueError):
    """A test-hook spec that cannot be parsed; the message names the problem."""


@dataclass(frozen=True, slots=True)
class LatencyMix:
    """Service times in fixed shares, e.g. 85% at 5 ms and 15% at 50 ms."""

    #: ``(share, seconds)`` pairs, shares summing to 1, in the order given.
    parts: tuple[tuple[float, float], ...]

    @classmethod
    def parse(cls, text: str) -> LatencyMix:
        """``"85%:5ms,15%:50ms"`` -> a mix; shares must add up to 100%."""
        parts: list[tuple[float, float]] = []
        for piece in text.split(","):
            match = _PART.match(piece)
            if match is None:
                raise HookError(f"--test-latency part {piece.strip()!r} is not SHARE%:DURATION")
            share, duration = match.groups()
            try:
                seconds = parse_duration(duration)
            except ValueError as exc:
                raise HookError(f"--test-latency {piece.strip()!r}: {exc}") from None
            if seconds > 60:
                raise HookError(f"--test-latency {piece.strip()!r}: at most 60 s")
            parts.append((float(share) / 100, seconds))
        total = sum(share for share, _ in parts)
        if abs(total - 1) > 1e-9:
            raise HookError(f"--test-latency shares add up to {total * 100:g}%, not 100%")
        return cls(tuple(parts))

    def delay(self, n: int) -> float:
        """Service time of the ``n``-th request (0-based)."""
        point = (n * _GOLDEN) % 1.0
        edge = 0.0
        for share, seconds in self.parts:
            edge += share
            if point < edge:
                return seconds
        return self.parts[-1][1]


@dataclass(frozen=True, slots=True)
class StallPlan:
    """Stop answering for ``stall`` seconds at the end of every ``period``."""

    stall: float
    period: float

    @classmethod
    def parse(cls, text: str) -> StallPlan:
        """``"1s/5s"``: a 1 s stall every 5 s."""
        stall_text, slash, period_text = text.partition("/")
        if not slash:
            raise HookError(f"--test-stall {text!r} is not STALL/PERIOD (e.g. 1s/5s)")
        try:
            stall, period = parse_duration(stall_text), parse_duration(period_text)
        except ValueError as exc:
            raise HookError(f"--test-stall {text!r}: {exc}") from None
        if not 0 < stall < period:
            raise HookError(f"--test-stall {text!r}: the stall must be shorter than the period")
        return cls(stall, period)

    def remaining(self, elapsed: float) -> float:
        """Seconds until the stall in progress at ``elapsed`` ends (0 outside a stall)."""
        into = elapsed % self.period
        start = self.period - self.stall
        return self.period - into if into >= start else 0.0


class TestHooks:
    """One target's hooks: how long to hold each request, and what it actually held."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, latency: LatencyMix | None, stall: StallPlan | None) -> None:
        self.latency = latency
        self.stall = stall
        self.started = time.perf_counter()
        self.count = 0
        self.stalled = 0
        self._held: list[float] = []

    @property
    def active(self) -> bool:
        return self.latency is not None or self.stall is not None

    async def hold(self) -> None:
        """Hold the calling request for its service time (and any stall), then record it."""
        began = time.perf_counter()
        n = self.count
        self.count += 1
        delay = self.latency.delay(n) if self.latency is not None else 0.0
        if self.stall is not None:
            wait = self.stall.remaining(began - self.started)
            if wait > 0:
                self.stalled += 1
                delay += wait
        if delay > 0:
            await asyncio.sleep(delay)
        held = self._held
        if len(held) >= MAX_RECORDED:
            del held[: MAX_RECORDED // 10]
        held.append(time.perf_counter() - began)

    def stats(self) -> dict[str, object]:
        """Exact percentiles (ms) of the recorded holds: the ground truth of a run."""
        held = sorted(self._held)
        figures: dict[str, object] = {"requests": self.count, "stalled": self.stalled}
        if held:
            figures["held_ms"] = {
                name: round(held[_rank(len(held), q)] * 1000, 4)
                for name, q in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99))
            } | {"max": round(held[-1] * 1000, 4), "count": len(held)}
        return figures


def _rank(count: int, q: float) -> int:
    """Index of the ``q`` quantile in a sorted list, by the rule wirelab's histograms use
    (the value at rank ``floor(q * (count - 1))``), so truth and report mean the same thing."""
    return min(count - 1, max(0, int(q * (count - 1))))
