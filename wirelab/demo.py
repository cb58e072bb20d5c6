"""``wirelab demo`` (what ``make demo`` runs): the default scenario on the embedded lab.

Starts the local lab — the four reference targets, a Locust master and its workers as
processes on loopback — runs the ``smoke`` scenario headless, prints the summary and
writes the HTML report. It is ``wirelab run --scenario smoke`` with a demo's duration.
"""

from __future__ import annotations

from pathlib import Path

from .run import RunPlan, execute_run
from .scenarios import load_scenario
from .thresholds import parse_threshold


def run_demo(*, duration: float, report_dir: Path = Path("reports")) -> int:
    """Run the smoke scenario for ``duration`` seconds; returns the run's exit code."""
    scenario = load_scenario("smoke")
    scenario.duration = duration
    plan = RunPlan(
        scenario=scenario,
        thresholds=[parse_threshold(expression) for expression in scenario.thresholds],
        report_dir=report_dir,
    )
    return execute_run(plan)
