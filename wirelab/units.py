"""The units people type, one grammar for all of them: durations, sizes, rates and ratios.

Every place that reads one of these (command line, environment, scenario files, thresholds,
the chart's values) goes through this module, so ``500/s`` or ``250ms`` means the same
everywhere:

==========  ========================================================  =====================
kind        grammar                                                   examples
==========  ========================================================  =====================
duration    NUMBER [us|µs|ms|s|m|h]; a bare number is ``default_unit``  ``30s`` ``250ms`` ``1.5``
size        WHOLE [b|kb|kib|mb|mib] (any case); bytes                  ``64`` ``4KiB`` ``1MB``
rate        NUMBER [/s|/sec|/second|/m|/min|/minute|/h|/hour]; per s   ``500/s`` ``3000/m`` ``12.5``
ratio       NUMBER [%]                                                 ``0.02`` ``0.1%``
==========  ========================================================  =====================

NUMBER is a non-negative decimal (``12``, ``0.5``): no sign, no exponent, so ``-1s``,
``1e3`` and ``nan`` are refused rather than read as something surprising.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "DURATION_PATTERN",
    "DURATION_UNITS",
    "RATE_PATTERN",
    "RATE_UNITS",
    "SIZE_PATTERN",
    "SIZE_UNITS",
    "parse_duration",
    "parse_rate",
    "parse_ratio",
    "parse_size",
    "split_quantity",
]

#: Seconds per duration unit.
DURATION_UNITS: dict[str, float] = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
#: Bytes per size unit (matched case-insensitively).
SIZE_UNITS: dict[str, int] = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}
#: Seconds per rate unit, the part after ``/`` (matched case-insensitively).
RATE_UNITS: dict[str, float] = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


def _any_case(word: str) -> str:
    # JSON Schema patterns (ECMA-262) have no case-insensitive flag: spell each letter both ways.
    return "".join(f"[{c.lower()}{c.upper()}]" if c.lower() != c.upper() else c for c in word)


_NUMBER = r"[0-9]+(\.[0-9]+)?"
#: The grammars as JSON Schema patterns, for the scenario schema and the chart's values schema
#: (``tests/test_helm_chart.py`` checks the chart uses exactly these).
DURATION_PATTERN = rf"^\s*{_NUMBER}\s*({'|'.join(DURATION_UNITS)})?\s*$"
SIZE_PATTERN = rf"^\s*[0-9]+\s*({'|'.join(map(_any_case, SIZE_UNITS))})?\s*$"
RATE_PATTERN = rf"^\s*{_NUMBER}\s*(/\s*({'|'.join(map(_any_case, RATE_UNITS))}))?\s*$"

_QUANTITY = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>(?:/\s*)?[^\s\d./][^\s/]*)?\s*$")


def split_quantity(text: object) -> tuple[float, str]:
    """``"250ms"`` → ``(250.0, "ms")``, ``"500 / s"`` → ``(500.0, "/s")``, ``"3"`` → ``(3.0, "")``.

    Raises:
        ValueError: not a non-negative finite number with an optional unit.
    """
    digits, unit = _split(text)
    number = float(digits)
    if not math.isfinite(number):  # hundreds of digits overflow to inf
        raise ValueError(f"out of range: {text!r}")
    return number, unit


def _split(text: object) -> tuple[str, str]:
    match = _QUANTITY.match(str(text))
    if match is None:
        raise ValueError(f"not a number: {text!r}")
    return match["number"], (match["unit"] or "").replace(" ", "")


def parse_duration(text: object, *, default_unit: str = "s") -> float:
    """``"1.5s"``, ``"250ms"``, ``"2m"`` or a bare number of ``default_unit``, in seconds."""
    try:
        number, unit = split_quantity(text)
        seconds = number * DURATION_UNITS[unit or default_unit]
    except (ValueError, KeyError):
        raise ValueError(f"not a duration: {text!r} (examples: 30s, 250ms, 5m)") from None
    if not math.isfinite(seconds):
        raise ValueError(f"duration out of range: {text!r}")
    return seconds


def parse_size(text: object) -> int:
    """``"64"``, ``"4KiB"``, ``"1MB"`` in bytes (whole bytes: ``1.5KiB`` is refused)."""
    try:
        digits, unit = _split(text)
        factor = SIZE_UNITS[(unit or "b").lower()]
    except (ValueError, KeyError):
        digits, factor = ".", 0
    if not factor or "." in digits:
        raise ValueError(f"not a size: {text!r} (examples: 64, 4KiB, 1MiB)")
    return int(digits) * factor


def parse_rate(text: object, *, allow_zero: bool = False) -> float:
    """``"500/s"``, ``"3000/m"``, ``"12.5"`` (per second) → per second.

    A rate is positive unless ``allow_zero`` (a feed that publishes nothing is a feed).

    Raises:
        ValueError: not a rate, or zero when that is not allowed; the message gives examples.
    """
    try:
        number, unit = split_quantity(text)
        per = RATE_UNITS[unit.removeprefix("/").lower()] if unit else 1.0
        if unit and not unit.startswith("/"):
            raise KeyError(unit)
    except (ValueError, KeyError):
        raise ValueError(f"not a rate: {text!r} (examples: 500/s, 3000/m, 50)") from None
    if number == 0 and not allow_zero:
        raise ValueError(f"rate must be more than 0, got {text!r}")
    return number / per


def parse_ratio(text: object) -> float:
    """``"0.02"`` or ``"2%"`` → 0.02."""
    try:
        number, unit = split_quantity(text)
    except ValueError:
        raise ValueError(f"not a ratio: {text!r} (examples: 0.01, 1%)") from None
    if unit not in ("", "%"):
        raise ValueError(f"not a ratio: {text!r} (examples: 0.01, 1%)")
    return number / 100 if unit == "%" else number
