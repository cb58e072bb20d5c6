"""Repetitions, medians and spread; percentiles out of the lab's mergeable histograms."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from wirelab.metrics.histogram import LogHistogram

__all__ = ["histogram_ms", "spread_pct", "summarize", "summarize_runs"]


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
        elif present and all(v == present[0] for v in present):
            result[key] = present[0]
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


def _label(q: float) -> str:
    text = f"{q * 100:g}".replace(".", "")
    return f"p{text}"
