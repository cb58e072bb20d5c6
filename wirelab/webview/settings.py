"""How the run's thresholds reach the Locust master, where the live view judges them.

``wirelab run`` and ``wirelab up`` put the run's threshold expressions into
``WIRELAB_THRESHOLDS`` (a JSON list of strings) in the master's environment; the view parses
them once when Locust starts. The variable is the one place the master learns them: the
locustfile stays the same for every run of a scenario.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

from ..thresholds import Threshold, ThresholdError, parse_threshold

__all__ = ["THRESHOLDS_ENV", "live_view_environment", "thresholds_from_environment"]

THRESHOLDS_ENV = "WIRELAB_THRESHOLDS"


def live_view_environment(
    thresholds: Iterable[str], fallback: Iterable[str] = ()
) -> dict[str, str]:
    """The master's environment for the live view: the run's threshold expressions (the
    scenario's plus ``--threshold``), or ``fallback`` — the scenario's own — when the run
    judges none (``wirelab up``)."""
    expressions = list(thresholds) or list(fallback)
    return {THRESHOLDS_ENV: json.dumps(expressions)}


def thresholds_from_environment(
    env: Mapping[str, str] | None = None,
) -> tuple[list[Threshold], list[str]]:
    """The thresholds in ``WIRELAB_THRESHOLDS``, and one message per entry that is not one.

    A bad entry does not stop the master (``wirelab run`` has checked them already); the
    view shows the message in its place.
    """
    env = os.environ if env is None else env
    raw = env.get(THRESHOLDS_ENV, "").strip()
    if not raw:
        return [], []
    try:
        items = json.loads(raw)
    except json.JSONDecodeError as exc:
        return [], [f"{THRESHOLDS_ENV} is not a JSON list of expressions ({exc.msg})"]
    if not isinstance(items, list):
        return [], [f"{THRESHOLDS_ENV} is not a JSON list of expressions"]
    thresholds: list[Threshold] = []
    errors: list[str] = []
    for item in items:
        try:
            thresholds.append(parse_threshold(str(item)))
        except ThresholdError as exc:
            errors.append(str(exc))
    return thresholds, errors
