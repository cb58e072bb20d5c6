"""``wirelab demo`` (what ``make demo`` runs): the default scenario on the embedded lab.

Starts the local lab — the four reference targets, a Locust master and its workers as
processes on loopback — runs the ``smoke`` scenario headless, prints the summary and
writes the HTML report. It is ``wirelab run --scenario smoke`` with a demo's duration.
"""

from __future__ import annotations

from pathlib import Path

from .plan import build_plan
from .run import execute_run
from .run_options import RunRequest


def run_demo(*, duration: float, report_dir: Path = Path("reports")) -> int:
    """Run the smoke scenario for ``duration`` seconds; returns the run's exit code."""
    request = RunRequest(scenario="smoke", duration=duration, report_dir=report_dir)
    request.labels["duration"] = "--duration"
    return execute_run(build_plan(request))
