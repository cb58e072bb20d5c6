"""The run's verdict on the terminal, in the report's order: the verdict and headline figures,
the thresholds one line per expression, then the request and stream tables, then the verdict
again as the last line (what a CI log shows when it is cut short)."""

from __future__ import annotations

from typing import Any

from ..metrics.generator import GENERATOR_BOUND, UNMEASURED
from .glance import generator_claim, group_thresholds, headline, is_held
from .summary import OPEN_MODEL_NOTE, retried_note

__all__ = ["format_terminal_summary"]

#: Failing subjects listed under their expression; the rest are counted.
FAILING_SHOWN = 5


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _cell(value: float | None) -> str:
    return f"{'-' if value is None else f'{value:.1f}':>9}"


def _header(summary: dict[str, Any]) -> list[str]:
    glance = headline(summary)
    error_rate = "-" if glance.error_rate is None else f"{glance.error_rate:.2%}"
    lines = [
        f"run {summary['run_id']}: {glance.verdict} (exit code {glance.exit_code}): "
        f"{glance.reason}",
        f"  requests {glance.requests:,} ({glance.failures:,} failed, {error_rate})"
        f" · events delivered {glance.delivered:,}, lost {glance.lost:,}",
    ]
    worst = [
        f"{item.protocol} {_ms(item.request_p99_ms)}"
        + (f" (lag {_ms(item.lag_p99_ms)})" if item.lag_p99_ms is not None else "")
        for item in glance.worst
    ]
    if worst:
        lines.append("  worst p99: " + " · ".join(worst))
    lines += generator_lines(glance.generator or {})
    lines += [f"  action: {line}" for line in glance.actions]
    return lines


def generator_lines(generator: dict[str, Any]) -> list[str]:
    """The generator's line (and, when it was the bottleneck, why, per worker)."""
    if not generator or generator.get("verdict") == UNMEASURED:
        return ["  generator: not measured (no worker reported its CPU and loop lag)"]
    bounds = generator["bounds"]
    figures = (
        f"CPU max {generator['cpu_max']:.0f}% of a core (mean {generator['cpu_mean']:.0f}%), "
        f"loop-lag p99 {_number(generator['loop_lag_p99_ms'])} ms "
        f"(max {_number(generator['loop_lag_max_ms'])}); "
        f"bounds {bounds['cpu_percent']:g}% and {bounds['loop_lag_p99_ms']:g} ms"
    )
    if generator["verdict"] != GENERATOR_BOUND:
        lines = [f"  generator: clean: {figures}"]
    else:
        lines = [f"  generator: GENERATOR-BOUND: {generator_claim(generator)} {figures}"]
        lines += [f"    {reason}" for reason in generator["reasons"]]
    lines += [f"    note: {note}" for note in generator.get("notes", ())]
    return lines


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _thresholds(summary: dict[str, Any]) -> list[str]:
    groups = group_thresholds(summary["thresholds"])
    if not groups:
        return []
    lines = ["", "thresholds"]
    width = max(len(group.expression) for group in groups)
    for group in groups:
        mark = "ok  " if group.passed else "FAIL"
        total = len(group.subjects)
        subject = group.worst_subject
        count = ""
        if group.failed and total > 1:
            count = f" ({group.failed} of {total} failed)"
        elif total > 1 and not group.tied:
            count = f" (worst of {total})"
        lines.append(
            f"  {mark} {group.expression:<{width}}  {subject}: {group.worst['detail']}{count}"
        )
        failing = [row for row in group.subjects if not row["passed"] and row is not group.worst]
        for row in failing[:FAILING_SHOWN]:
            lines.append(f"         also {row['subject']}: {row['detail']}")
        if len(failing) > FAILING_SHOWN:
            lines.append(f"         and {len(failing) - FAILING_SHOWN} more (see report.html)")
    return lines


def _tables(summary: dict[str, Any]) -> list[str]:
    open_model = any("service_ms" in row for row in summary["requests"])
    head = f"{'name':<28}{'count':>9}{'fail':>7}" + "".join(
        f"{title:>9}" for title in ("p50 ms", "p95 ms", "p99 ms", "max ms")
    )
    lines = ["", head + (f"{'svc p99':>9}{'dropped':>9}" if open_model else "")]
    for row in summary["requests"]:
        lat = row["latency_ms"]
        name = row["name"] + (" (held)" if is_held(row["name"]) else "")
        line = f"{name[:27]:<28}{row['count']:>9}{row['failures']:>7}" + "".join(
            _cell(lat[key]) for key in ("p50", "p95", "p99", "max")
        )
        if open_model:
            line += _cell((row.get("service_ms") or {}).get("p99")) + f"{row.get('dropped', 0):>9}"
        lines.append(line)
    if any(is_held(row["name"]) for row in summary["requests"]):
        lines.append("  (held): long polls the server holds until news: waiting, not latency")
    if open_model:
        lines.append(f"  open model: {OPEN_MODEL_NOTE}")
    retried = retried_note(summary["requests"])
    if retried:
        lines.append(f"  {retried}")
    if summary["streams"]:
        lines.append(
            f"\n{'stream':<28}{'delivered':>10}{'missing':>9}{'dup':>6}{'resets':>8}"
            f"{'reconn':>8}{'lag p99':>9}"
        )
        for row in summary["streams"]:
            lines.append(
                f"{row['name'][:27]:<28}{row['delivered']:>10}{row['missing']:>9}"
                f"{row['duplicates']:>6}{row['resets']:>8}{row['reconnects']:>8}"
                + _cell(row["lag_ms"]["p99"])
            )
    return lines


def format_terminal_summary(summary: dict[str, Any]) -> str:
    """The verdict and headline figures, thresholds, tables and notes, for the terminal."""
    lines = ["", *_header(summary), *_thresholds(summary), *_tables(summary)]
    notes = [
        f"  note: worker {lost.get('worker')} was lost; its earlier counts are kept"
        for lost in summary["workers"]["lost"]
    ]
    notes += [f"  INCOMPLETE: {reason}" for reason in summary["incomplete"]]
    if notes:
        lines += ["", *notes]
    glance = headline(summary)
    lines.append(f"\nrun {summary['run_id']}: {glance.verdict} (exit code {glance.exit_code})")
    return "\n".join(lines)
