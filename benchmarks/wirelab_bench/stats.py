"""Repetitions, medians and spread; percentiles out of the lab's mergeable histograms."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from wirelab.metrics.histogram import LogHistogram

__all__ = ["histogram_ms", "merge_wire", "per_1k", "spread_pct", "summarize", "summarize_runs"]


def spread_pct(values: Iterable[float]) -> float | None:
    """(max − min) / median in percent: how far apart the repetitions landed."""
    data = [float(v) for v in values]
    if not data:
        return None
    middle = statistics.median(data)
    if middle == 0:
        return 0.0 if max(data) == min(data) else None
    return 100.0 * (max(data) - min(data)) / abs(middle)


def summarize(values: Iterable[float | None]) -> dict[str, Any]:
    """Median, min, max, spread (%) and n of the repetitions that produced a number."""
    data = [float(v) for v in values if v is not None]
    if not data:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "n": 0}
    spread = spread_pct(data)
    return {
        "median": statistics.median(data),
        "min": min(data),
        "max": max(data),
        "spread_pct": None if spread is None else round(spread, 1),
        "n": len(data),
    }


def summarize_runs(runs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Summarise every numeric key that the repetitions share (nested dicts recurse).

    Non-numeric values (verdicts, names) are kept when every repetition agrees, else listed.
    """
    if not runs:
        return {}
    keys: list[str] = []
    for run in runs:
        keys += [key for key in run if key not in keys]
    result: dict[str, Any] = {}
    for key in keys:
        values = [run.get(key) for run in runs]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, Mapping) for v in present):
            result[key] = summarize_runs(present)
        elif present and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in present
        ):
            result[key] = summarize(present)
        elif all(v == values[0] for v in values):
            result[key] = values[0]
        else:
            result[key] = values
    return result


def histogram_ms(
    wire: Mapping[str, Any] | None, qs: tuple[float, ...] = (0.5, 0.99)
) -> dict[str, Any]:
    """Percentiles (ms) and count of a histogram in wire form (values in µs)."""
    if not wire:
        return {"n": 0, **{_label(q): None for q in qs}}
    histogram = LogHistogram.from_wire(dict(wire))
    found = histogram.quantiles(list(qs))
    out: dict[str, Any] = {"n": histogram.count}
    for q in qs:
        value = found[q]
        out[_label(q)] = None if value is None else round(value / 1000, 3)
    out["mean"] = None if histogram.mean is None else round(histogram.mean / 1000, 3)
    return out


def merge_wire(wires: Iterable[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """One histogram (wire form) holding every sample of ``wires``."""
    merged: LogHistogram | None = None
    for wire in wires:
        if not wire:
            continue
        histogram = LogHistogram.from_wire(dict(wire))
        if merged is None:
            merged = histogram
        else:
            merged.merge(histogram)
    return None if merged is None else merged.to_wire()


def per_1k(cpu_s: float, count: float) -> float | None:
    """CPU seconds per 1,000 operations (``None`` when there were none)."""
    return round(1000 * cpu_s / count, 4) if count else None


def _label(q: float) -> str:
    text = f"{q * 100:g}".replace(".", "")
    return f"p{text}"


def flatten_medians(summary: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"request.ws.p50_ms": median, ...}`` for every summarised number."""
    flat: dict[str, float] = {}
    for key, value in summary.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and "median" in value and "spread_pct" in value:
            if isinstance(value["median"], int | float):
                flat[path] = float(value["median"])
        elif isinstance(value, Mapping):
            flat.update(flatten_medians(value, f"{path}."))
    return flat


def reproducibility(
    first: Mapping[str, Any],
    second: Mapping[str, Any],
    keys: Iterable[str],
    bound_pct: float = 15,
    resolution: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """How far apart two runs' medians are on ``keys`` (difference over their mean, in %).

    A figure is within when the difference is at most ``bound_pct``, or at most the
    ``resolution`` of the first pattern (fnmatch) its key matches: below it the two numbers
    are one measurement (0.1 against 0 bytes per event is not a 200% difference).
    """
    a, b = flatten_medians(first), flatten_medians(second)
    rows = {}
    for key in keys:
        if key not in a or key not in b:
            continue
        mean = (a[key] + b[key]) / 2
        diff = 0.0 if mean == 0 else 100 * abs(a[key] - b[key]) / abs(mean)
        floor = next(
            (value for pattern, value in (resolution or {}).items() if fnmatchcase(key, pattern)),
            0.0,
        )
        rows[key] = {
            "first": a[key],
            "second": b[key],
            "diff_pct": round(diff, 1),
            "within": round(diff, 1) <= bound_pct or abs(a[key] - b[key]) <= floor,
        }
    return {
        "bound_pct": bound_pct,
        "within": sum(1 for row in rows.values() if row["within"]),
        "compared": len(rows),
        "rows": rows,
    }
