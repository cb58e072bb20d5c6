"""After a run: read what the master recorded, judge the thresholds, write the report.

:func:`write_report` writes a run directory's report files and returns the verdict;
:func:`build_report` does that and prints it (``wirelab run``, the cluster ``master`` role);
the lab's web UI tests are written by the same :func:`write_report`
(:mod:`wirelab.report.lab`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exitcodes import EXIT_GENERATOR_BOUND, EXIT_INCOMPLETE, EXIT_OK, EXIT_THRESHOLD_FAILED
from ..metrics.generator import GENERATOR_BOUND, judge
from ..metrics.lineprotocol import encode, threshold_point
from ..metrics.results import (
    JUNIT_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
    TIMESERIES_FILE,
    RunResults,
    load_results,
)
from ..metrics.sinks import open_transport, parse_sink_url
from ..plan import RunPlan
from ..thresholds import Verdict, evaluate
from .deploy import deploy_summary
from .html import render_report
from .summary import build_junit, build_summary
from .terminal import format_terminal_summary


def _load(plan: RunPlan, incomplete: list[str]) -> RunResults | None:
    try:
        results = load_results(plan.run_dir)
    except (FileNotFoundError, ValueError) as exc:
        incomplete.append(f"no results were recorded ({exc})")
        return None
    if not results.complete:
        incomplete.append("the master did not write its final metrics")
    # A worker whose heartbeats stopped and then resumed (a loop stalled on a saturated host)
    # came back: its figures are the generator verdict's business, not a run that broke off.
    seen = set(results.workers_seen)
    lost = {w.get("worker") for w in results.workers_lost if "back_at" not in w}
    if seen and seen <= lost:
        incomplete.append("every worker was lost")
    elif not seen and results.complete:
        incomplete.append("no worker ever reported")
    return results


@dataclass(frozen=True, slots=True)
class WrittenReport:
    """A run's report as written: its exit code, ``summary.json``'s content, its files."""

    code: int
    summary: dict[str, Any]
    run_dir: Path

    @property
    def html(self) -> Path:
        return self.run_dir / REPORT_FILE

    @property
    def summary_file(self) -> Path:
        return self.run_dir / SUMMARY_FILE


def build_report(plan: RunPlan, *, incomplete: list[str], wall_time_s: float) -> int:
    """Write summary.json, junit.xml and report.html; print the verdict; return the exit code
    (see :func:`write_report`)."""
    report = write_report(plan, incomplete=incomplete, wall_time_s=wall_time_s)
    print(format_terminal_summary(report.summary))
    print(f"\nreport: {report.html}\nsummary: {report.summary_file}")
    return report.code


def write_report(
    plan: RunPlan, *, incomplete: list[str], wall_time_s: float | None = None
) -> WrittenReport:
    """Judge the run in ``plan.run_dir``; write summary.json, junit.xml and report.html there.

    ``incomplete``: what already went wrong; ``wall_time_s``: how long the whole run took,
    targets and waits included (``None``: the run's own duration, as for a test of the
    lab's web UI, which is one stretch of a longer-lived lab).

    The code: 3 when the run did not complete, else 1 when a threshold failed, else 4 when
    the generator was the bottleneck (its figures are partly its own: not a pass), else 0.
    """
    run_dir = plan.run_dir
    incomplete = list(incomplete)
    results = _load(plan, incomplete)
    duration = plan.scenario.duration
    if results is not None and results.started_at and results.ended_at:
        duration = max(0.001, results.ended_at - results.started_at)
    verdicts: list[Verdict] = []
    generator = judge(None)
    if results is not None:
        generator = judge(
            results.generator,
            requests=results.requests.values(),
            streams=results.streams.values(),
        )
        verdicts = evaluate(
            plan.thresholds,
            results.requests,
            results.streams,
            duration_s=duration,
            generator=generator,
        )
    try:
        deploy = deploy_summary(results)
    except Exception as exc:  # a report bug must not cost the run its verdict
        deploy = None
        incomplete.append(f"the deploy figures could not be computed ({type(exc).__name__}: {exc})")
    for action in (deploy or {}).get("actions", ()):
        if not action["ok"]:
            # An action that failed (or never finished) means the scenario did not happen.
            incomplete.append(f"action {action['action']} {action['service']} failed: "
                              f"{action.get('error', '')}")  # fmt: skip
    if incomplete:
        code = EXIT_INCOMPLETE
    elif any(not verdict.passed for verdict in verdicts):
        code = EXIT_THRESHOLD_FAILED
    elif generator["verdict"] == GENERATOR_BOUND:
        code = EXIT_GENERATOR_BOUND
    else:
        code = EXIT_OK
    summary = build_summary(
        run_id=plan.run_id,
        scenario=plan.scenario.name,
        duration_s=round(duration, 3),
        results=results,
        verdicts=verdicts,
        incomplete=incomplete,
        exit_code=code,
        open_model=plan.scenario.rate is not None,
        generator=generator,
    )
    summary["wall_time_s"] = round(duration if wall_time_s is None else wall_time_s, 1)
    if deploy is not None:
        summary["deploy"] = deploy
    summary["threshold_points"] = write_threshold_points(plan, verdicts)
    report = WrittenReport(code, summary, run_dir)
    (run_dir / JUNIT_FILE).write_text(build_junit(plan.run_id, verdicts, incomplete, generator))
    report.html.write_text(render_report(summary, results))
    # Last: a summary.json says the report is all there (the lab's reader waits on it).
    report.summary_file.write_text(json.dumps(summary, indent=2) + "\n")
    return report


def write_threshold_points(plan: RunPlan, verdicts: list[Verdict]) -> dict[str, str]:
    """Append the verdicts as ``thresholds`` points to the run's time series and its sinks.

    The master's sinks have closed by the time the run is judged, so this step writes its
    own few points, synchronously. A sink that fails here is reported, never fatal: the
    verdict is already in summary.json and junit.xml.
    """
    if not verdicts:
        return {}
    time_ns = time.time_ns()
    base = {"run_id": plan.run_id, "scenario": plan.scenario.name}
    lines = [
        encode(
            threshold_point(
                verdict.threshold.expression,
                verdict.subject,
                passed=verdict.passed,
                observed=verdict.observed,
                limit=verdict.threshold.value,
                detail=verdict.detail,
                base_tags=base,
                time_ns=time_ns,
            )
        )
        for verdict in verdicts
    ]
    body = ("\n".join(lines) + "\n").encode()
    outcome: dict[str, str] = {}
    with (plan.run_dir / TIMESERIES_FILE).open("ab") as timeseries:
        timeseries.write(body)
    outcome[TIMESERIES_FILE] = "written"
    for url in plan.sinks:
        try:
            transport = open_transport(parse_sink_url(url))
            try:
                transport.send(body, len(lines))
            finally:
                transport.close()
            outcome[url] = "written"
        except Exception as exc:  # a sink failure must not change the verdict
            outcome[url] = f"failed: {type(exc).__name__}"
    return outcome
