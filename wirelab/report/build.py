"""After a run: read what the master recorded, judge the thresholds, write the report."""

from __future__ import annotations

import json
import time

from ..exitcodes import EXIT_GENERATOR_BOUND, EXIT_INCOMPLETE, EXIT_OK, EXIT_THRESHOLD_FAILED
from ..metrics.generator import GENERATOR_BOUND, judge
from ..metrics.lineprotocol import encode, threshold_point
from ..metrics.results import TIMESERIES_FILE, RunResults, load_results
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


def build_report(plan: RunPlan, *, incomplete: list[str], wall_time_s: float) -> int:
    """Write summary.json, junit.xml and report.html; print the verdict; return the exit code.

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
    summary["wall_time_s"] = round(wall_time_s, 1)
    if deploy is not None:
        summary["deploy"] = deploy
    summary["threshold_points"] = write_threshold_points(plan, verdicts)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (run_dir / "junit.xml").write_text(build_junit(plan.run_id, verdicts, incomplete, generator))
    (run_dir / "report.html").write_text(render_report(summary, results))
    print(format_terminal_summary(summary))
    print(f"\nreport: {run_dir / 'report.html'}\nsummary: {run_dir / 'summary.json'}")
    return code


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
