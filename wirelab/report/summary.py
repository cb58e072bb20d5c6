"""``summary.json`` and ``junit.xml``: the machine-readable verdict of a run."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any
from xml.etree import ElementTree as ET

from ..metrics.generator import GENERATOR_BOUND, UNMEASURED
from ..metrics.histogram import LogHistogram
from ..metrics.results import RunResults
from ..thresholds import Verdict
from .glance import generator_claim, group_thresholds, verdict_word

QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}

#: Why an open-model run shows two latencies; the HTML report and the terminal both say it.
OPEN_MODEL_NOTE = (
    "Latency counts from when each request was scheduled to start, so a stalled server shows "
    "in its percentiles, while service time starts the clock at the actual send, as a "
    "closed-loop tool would, and hides such stalls (coordinated omission)."
)


def retried_note(requests: list[dict[str, Any]]) -> str | None:
    """What the report and the terminal say of requests sent again after a server left."""
    retried = [(row["name"], row["retried"]) for row in requests if row.get("retried")]
    if not retried:
        return None
    parts = ", ".join(f"{name} {count:,}" for name, count in retried)
    return (
        f"Sent again after the server went away before replying (a drain): {parts}. Each "
        "counts once, its latency from the first send, the reconnect included."
    )


def histogram_ms(
    histogram: LogHistogram, names: Iterable[str] = tuple(QUANTILES)
) -> dict[str, float | None]:
    """Percentiles (``names``, default all of :data:`QUANTILES`), max and mean of a µs
    histogram, in ms (``None`` when empty)."""
    wanted = {name: QUANTILES[name] for name in names}
    if not histogram:
        return {**dict.fromkeys(wanted), "max": None, "mean": None}
    values = histogram.quantiles(list(wanted.values()))
    figures: dict[str, float | None] = {
        name: round(values[q] / 1000, 3) for name, q in wanted.items()
    }
    figures["max"] = round(histogram.max / 1000, 3)
    figures["mean"] = round(histogram.mean / 1000, 3)
    return figures


def build_summary(
    *,
    run_id: str,
    scenario: str,
    duration_s: float,
    results: RunResults | None,
    verdicts: list[Verdict],
    incomplete: list[str],
    exit_code: int,
    open_model: bool,
    generator: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a pipeline needs to gate or trend on, in one JSON document.

    ``generator`` is the generator verdict (:func:`wirelab.metrics.generator.judge`).
    """
    requests: list[dict[str, Any]] = []
    streams: list[dict[str, Any]] = []
    if results is not None:
        for series in sorted(results.requests.values(), key=lambda s: (s.protocol, s.name)):
            row: dict[str, Any] = {
                "name": series.name,
                "protocol": series.protocol,
                "count": series.count,
                "failures": series.failures,
                "error_rate": round(series.failures / series.count, 6) if series.count else 0.0,
                "rps": round(series.count / duration_s, 2) if duration_s else None,
                "bytes": series.bytes,
                "latency_ms": histogram_ms(series.latency),
                "errors": dict(series.errors),
            }
            if series.service:
                row["service_ms"] = histogram_ms(series.service)
            if series.dropped or open_model:
                row["dropped"] = series.dropped
            if series.retried:
                row["retried"] = series.retried
            requests.append(row)
        for series in sorted(results.streams.values(), key=lambda s: (s.protocol, s.name)):
            streams.append(
                {
                    "name": series.name,
                    "protocol": series.protocol,
                    "delivered": series.delivered,
                    "gaps": series.gaps,
                    "missing": series.missing,
                    "duplicates": series.duplicates,
                    "out_of_order": series.out_of_order,
                    "resets": series.resets,
                    "reset_lost": series.reset_lost,
                    "connects": series.connects,
                    "disconnects": series.disconnects,
                    "reconnects": series.reconnects,
                    "connect_failures": series.connect_failures,
                    "goaways": series.goaways,
                    "empty_polls": series.empty_polls,
                    "connected_peak": series.connected,
                    "lag_ms": histogram_ms(series.lag),
                    "reconnect_ms": histogram_ms(series.reconnect_time),
                }
            )
    return {
        "run_id": run_id,
        "scenario": scenario,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": duration_s,
        "exit_code": exit_code,
        "verdict": verdict_word(exit_code),
        "passed": exit_code == 0,
        "incomplete": incomplete,
        "model": "open (latency from intended start)" if open_model else "closed",
        "requests": requests,
        "streams": streams,
        # Grouped by expression in the order written, failing subjects first, each part
        # by name: two runs of one scenario list their verdicts in the same order.
        "thresholds": [
            row
            for group in group_thresholds(verdict.to_dict() for verdict in verdicts)
            for row in group.subjects
        ],
        "generator": generator or {},
        "workers": {
            "seen": results.workers_seen if results else [],
            "lost": results.workers_lost if results else [],
        },
        "sinks": results.sinks if results else [],
        "annotations": results.annotations if results else [],
    }


def build_junit(
    run_id: str,
    verdicts: list[Verdict],
    incomplete: list[str],
    generator: dict[str, Any] | None = None,
) -> str:
    """JUnit XML: one test case per threshold verdict, so CI systems show each gate, and
    one for the generator (failed when it was the bottleneck, skipped when unmeasured)."""
    bound = bool(generator) and generator.get("verdict") == GENERATOR_BOUND
    suite = ET.Element(
        "testsuite",
        name=f"wirelab {run_id}",
        tests=str(len(verdicts) + (1 if incomplete else 0) + (1 if generator else 0)),
        failures=str(sum(not v.passed for v in verdicts) + bound),
        errors=str(1 if incomplete else 0),
        skipped=str(int(bool(generator) and generator.get("verdict") == UNMEASURED)),
    )
    for verdict in verdicts:
        case = ET.SubElement(
            suite,
            "testcase",
            classname="wirelab.thresholds",
            name=f"{verdict.threshold.expression} [{verdict.subject}]",
        )
        if not verdict.passed:
            failure = ET.SubElement(case, "failure", message=verdict.detail)
            failure.text = verdict.detail
    if generator:
        bounds = generator.get("bounds", {})
        case = ET.SubElement(
            suite,
            "testcase",
            classname="wirelab.generator",
            name=f"generator kept up (CPU below {bounds.get('cpu_percent', 0):g}% of a core, "
            f"loop-lag p99 below {bounds.get('loop_lag_p99_ms', 0):g} ms)",
        )
        if bound:
            failure = ET.SubElement(case, "failure", message=generator_claim(generator))
            failure.text = "\n".join([generator_claim(generator), *generator["reasons"]])
        elif generator.get("verdict") == UNMEASURED:
            ET.SubElement(case, "skipped", message="; ".join(generator.get("reasons", ())))
    if incomplete:
        case = ET.SubElement(suite, "testcase", classname="wirelab.run", name="run completed")
        error = ET.SubElement(case, "error", message="; ".join(incomplete))
        error.text = "\n".join(incomplete)
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )
