"""A mergeable log-bucket histogram with bounded relative error (DDSketch's mapping).

Values (microseconds) land in bucket ``ceil(log_gamma(v))`` with ``gamma = (1+a)/(1-a)``;
reporting a bucket's midpoint in that log space is within ``a`` of every value in it, so
any quantile is off by at most ``a`` relative (1% by default) across 1 µs – 10 min and
beyond. Buckets are plain counts, so merging two histograms is exact: the master's merge of
every worker's histogram equals the histogram of all samples. That is what Locust's own
stats (response times rounded to ~2 significant digits, percentiles from a capped dict)
cannot promise.
"""

from __future__ import annotations

import math
from typing import Any

#: Below this a value counts as "zero" (sub-microsecond clocks are noise here).
MIN_VALUE_US = 1.0

# gamma and log(gamma) per relative error, computed once.
_MAPPINGS: dict[float, tuple[float, float]] = {}


class LogHistogram:
    """Counts of values by log bucket; exact merge, ≤ ``relative_error`` on quantiles."""

    __slots__ = (
        "_log_gamma",
        "buckets",
        "count",
        "gamma",
        "max",
        "min",
        "relative_error",
        "sum",
        "zeros",
    )

    def __init__(self, relative_error: float = 0.01) -> None:
        mapping = _MAPPINGS.get(relative_error)
        if mapping is None:
            if not 0 < relative_error < 1:
                raise ValueError("relative_error must be in (0, 1)")
            gamma = (1 + relative_error) / (1 - relative_error)
            mapping = _MAPPINGS[relative_error] = (gamma, math.log(gamma))
        self.relative_error = relative_error
        # The master builds thousands of these a second (one per series per report).
        self.gamma, self._log_gamma = mapping
        self.buckets: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def record(self, value: float, count: int = 1) -> None:
        """Add ``count`` samples of ``value`` (µs). Negative values count as zero."""
        if value < MIN_VALUE_US:
            self.zeros += count
            value = max(value, 0.0)
        else:
            index = math.ceil(math.log(value) / self._log_gamma)
            buckets = self.buckets
            buckets[index] = buckets.get(index, 0) + count
        self.count += count
        self.sum += value * count
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def merge(self, other: LogHistogram) -> None:
        """Add every sample of ``other`` (same relative error) to this histogram."""
        if other.relative_error != self.relative_error:
            raise ValueError("cannot merge histograms with different relative errors")
        if not other.count:
            return
        buckets = self.buckets
        if not buckets:
            # The master's common case (a key's first delta of an interval): a C-speed copy.
            self.buckets = dict(other.buckets)
        else:
            for index, count in other.buckets.items():
                buckets[index] = buckets.get(index, 0) + count
        self.zeros += other.zeros
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def _bucket_value(self, index: int) -> float:
        # The point of the bucket (gamma^(i-1), gamma^i] whose relative distance to both
        # ends is equal: 2·gamma^i / (gamma + 1).
        return 2 * self.gamma**index / (self.gamma + 1)

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` in [0, 1] (µs), or ``None`` when empty."""
        return self.quantiles([q])[q]

    def quantiles(self, qs: list[float]) -> dict[float, float | None]:
        """Several quantiles in one pass over the sorted buckets."""
        if self.count == 0:
            return dict.fromkeys(qs)
        ordered = sorted(self.buckets)
        result: dict[float, float | None] = {}
        for q in qs:
            if q <= 0:
                result[q] = self.min
                continue
            if q >= 1:
                result[q] = self.max
                continue
            rank = q * (self.count - 1)
            if rank < self.zeros:
                result[q] = max(self.min, 0.0)
                continue
            seen = self.zeros
            value = self.max
            for index in ordered:
                seen += self.buckets[index]
                if seen > rank:
                    value = min(max(self._bucket_value(index), self.min), self.max)
                    break
            result[q] = value
        return result

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def to_wire(self) -> dict[str, Any]:
        """A msgpack/JSON-friendly form.

        Buckets travel as two parallel lists (indices ``i``, counts ``c``): they survive
        JSON as they are, and ``dict(zip(i, c))`` rebuilds them at C speed on the master,
        which decodes every worker's report every interval.
        """
        return {
            "e": self.relative_error,
            "i": list(self.buckets),
            "c": list(self.buckets.values()),
            "z": self.zeros,
            "n": self.count,
            "s": self.sum,
            "lo": self.min if self.count else None,
            "hi": self.max if self.count else None,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> LogHistogram:
        histogram = cls(data["e"])
        if "i" in data:
            histogram.buckets = dict(zip(data["i"], data["c"], strict=True))
        else:  # the first wire form: a dict with string keys
            histogram.buckets = {int(index): int(count) for index, count in data["b"].items()}
        histogram.zeros = int(data["z"])
        histogram.count = int(data["n"])
        histogram.sum = float(data["s"])
        if histogram.count:
            histogram.min = float(data["lo"])
            histogram.max = float(data["hi"])
        return histogram

    def copy(self) -> LogHistogram:
        return LogHistogram.from_wire(self.to_wire())
