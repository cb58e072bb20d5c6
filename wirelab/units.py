"""Parsing the units people type: durations, rates and sizes."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)?\s*$")
_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|kib|mb|mib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}


def parse_duration(text: str) -> float:
    """``"1.5s"``, ``"250ms"``, ``"2m"`` or a bare number of seconds, in seconds."""
    match = _DURATION.match(str(text))
    if match is None:
        raise ValueError(f"not a duration: {text!r} (examples: 30s, 250ms, 5m)")
    value, unit = match.groups()
    seconds = float(value) * _DURATION_UNITS[unit or "s"]
    if not math.isfinite(seconds):  # hundreds of digits overflow to inf: not a duration
        raise ValueError(f"duration out of range: {text!r}")
    return seconds


def parse_size(text: str) -> int:
    """``"64"``, ``"4KiB"``, ``"1MB"`` in bytes."""
    match = _SIZE.match(str(text))
    if match is None:
        raise ValueError(f"not a size: {text!r} (examples: 64, 4KiB, 1MiB)")
    value, unit = match.groups()
    return int(value) * _SIZE_UNITS[(unit or "b").lower()]
