"""``report.html``: the run as a person would rather read it than the JSON.

One self-contained page (inline CSS and SVG, no script): first the run at a glance (its
verdict and why, requests and error rate, events delivered and lost, the worst p99 per
protocol, the generator's verdict, what each deploy or storm did), then the thresholds, one
row per expression with its worst subject and the rest behind a disclosure, then the tables,
then time series that follow the Grafana dashboards' panels (``dashboards/``): the same
titles in the same order, one heading per dashboard, aggregated per interval as the panels'
InfluxQL does, with scenario actions marked on every chart. Long polls (held by the server
until there is news) are left out of the latency charts and drawn on their own, since their
time is waiting by design. Charts without data in the run's ``timeseries.lp`` are left out,
and the deploy section appears only for runs that acted on their targets.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from html import escape
from typing import Any

from ..metrics.generator import BOUNDS, GENERATOR_BOUND, UNMEASURED
from ..metrics.lineprotocol import Point
from ..metrics.results import RunResults
from .deploy import deploy_html
from .glance import (
    Headline,
    ThresholdGroup,
    generator_claim,
    group_thresholds,
    headline,
    is_held,
)
from .summary import OPEN_MODEL_NOTE, retried_note
from .svg import line_chart

Series = dict[str, list[tuple[float, float]]]

_CSS = " ".join(
    (
        "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1320px;color:#222;",
        "padding:0 16px}h1{font-size:22px;margin:0 0 4px}",
        "h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}",
        "h3{font-size:15px;margin:18px 0 6px;color:#444}",
        ".verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;",
        "font-weight:600}.pass{background:#1a7f37}.fail{background:#cf222e}",
        ".incomplete{background:#9a6700}.bound{background:#bc4c00}",
        "table{border-collapse:collapse;margin:6px 0 12px}",
        "td,th{padding:4px 10px;border-bottom:1px solid #eee;text-align:right}",
        "th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}",
        ".bad{color:#cf222e;font-weight:600}.good{color:#1a7f37}",
        ".note{background:#fff8c5;padding:8px 12px;border-radius:4px;margin:6px 0}",
        ".charts{display:flex;flex-wrap:wrap;gap:12px}",
        ".chart{border:1px solid #eee;border-radius:4px}.meta{color:#555}",
        ".glance{margin-bottom:8px}.reason{font-size:15px;margin:6px 0}",
        ".cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}",
        ".card{border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;min-width:170px;",
        "max-width:420px}.bad-card{border-color:#cf222e;background:#fff5f5}",
        ".card .label{color:#555;font-size:12px;text-transform:uppercase;letter-spacing:.04em}",
        ".card .value{font-size:22px;font-weight:600}.card .detail{color:#444;font-size:13px}",
        "details summary{cursor:pointer;color:#0969da}table.subjects{margin:4px 0 0}",
        "tr.fail-row td{background:#fff5f5}td{vertical-align:top}",
        "table.thresholds td,table.thresholds th,td.name{text-align:left}",
        ".tag{background:#ddf4ff;color:#0550ae;border-radius:3px;padding:0 5px;font-size:12px}",
    )
)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return escape(str(value))


@dataclass(frozen=True, slots=True)
class _Source:
    """Where a chart's lines come from, aggregated per interval as the panel's query does.

    ``how``: ``rate`` (the interval's sum over its length), ``sum``, ``max`` or ``mean``;
    one line per ``by`` tag value and field label. ``held``: ``False`` leaves out the
    requests the server holds on purpose (:data:`~.glance.HELD_REQUESTS`), ``True`` keeps
    only those, ``None`` takes every series.
    """

    measurement: str
    fields: tuple[tuple[str, str], ...]
    by: str = ""
    how: str = "max"
    scale: float = 1.0
    held: bool | None = None

    def takes(self, point: Point) -> bool:
        """Whether ``point`` belongs to this source's lines."""
        return self.held is None or is_held(point.tags.get("name", "")) == self.held


@dataclass(frozen=True, slots=True)
class Chart:
    """One time-series panel of the dashboards, as the report draws it."""

    title: str
    unit: str
    sources: tuple[_Source, ...]
    #: A horizontal reference line ``(value, label)``, e.g. CPU saturation at 100 %.
    line: tuple[float, str] | None = None


def _chart(
    title: str,
    unit: str,
    measurement: str,
    fields: str,
    by: str = "",
    how: str = "max",
    *,
    scale: float = 1.0,
    line: tuple[float, str] | None = None,
    held: bool | None = None,
) -> Chart:
    """A chart of one measurement; ``fields`` is ``"field"`` or ``"field:label ..."``."""
    pairs = tuple((spec.partition(":")[0], spec.partition(":")[2]) for spec in fields.split())
    return Chart(title, unit, (_Source(measurement, pairs, by, how, scale, held),), line)


_PERCENTILES = "p50:p50 p90:p90 p95:p95 p99:p99 p999:p99.9"
_LAG = "lag_p50:p50 lag_p90:p90 lag_p99:p99 lag_max:max"
_FAULTS = (
    "gaps:gaps missing:lost duplicates:duplicates out_of_order:out-of-order resets:resets "
    "reset_lost:lost-to-resets"
)
_CHURN = (
    "connects:connects disconnects:disconnects connect_failures:failed-connects goaways:goaways"
)

#: The one chart the dashboards do not have: long polls' time, apart from latency.
HOLD_CHART = "Long-poll hold time (waiting by design, not latency)"
#: Charts of the report that are not panels of the dashboards.
REPORT_ONLY_CHARTS = frozenset({HOLD_CHART})

#: The report's charts: the time-series panels of the Grafana dashboards (``dashboards/``),
#: same titles, same order, one section per dashboard (plus :data:`REPORT_ONLY_CHARTS`). A
#: chart already drawn in an earlier section, or without data in the run, is left out.
CHART_SECTIONS: tuple[tuple[str, tuple[Chart, ...]], ...] = (
    (
        "Run overview",
        (
            _chart("Users", "users", "users", "users:users", how="mean"),
            _chart("Throughput per protocol", "req/s", "requests", "count", "protocol", "rate"),
            _chart("Failures per protocol", "req/s", "requests", "failures", "protocol", "rate"),
            _chart(
                "Latency p50 per protocol", "ms", "requests", "p50:p50", "protocol", held=False
            ),
            _chart(
                "Latency p99 per protocol", "ms", "requests", "p99:p99", "protocol", held=False
            ),
            _chart(
                "Latency percentiles of the selected requests", "ms", "requests", _PERCENTILES,
                held=False,
            ),
            _chart("Latency p99 per request", "ms", "requests", "p99:p99", "name", held=False),
            _chart(
                HOLD_CHART, "ms", "requests", "p50:p50 p99:p99 max:max", "name", held=True
            ),
        ),
    ),
    (
        "Streams",
        (
            _chart(
                "Events delivered per protocol", "events/s", "streams", "delivered", "protocol",
                "rate",
            ),
            _chart(
                "Connected clients per protocol", "clients", "streams", "connected", "protocol",
                "sum",
            ),
            _chart("Delivery lag p50 per stream", "ms", "streams", "lag_p50:p50", "name"),
            _chart("Delivery lag p99 per stream", "ms", "streams", "lag_p99:p99", "name"),
            _chart("Delivery lag percentiles of the selected streams", "ms", "streams", _LAG),
            _chart(
                "Gaps, losses, duplicates and out-of-order events", "per interval", "streams",
                _FAULTS, how="sum",
            ),
            _chart("Reconnects per protocol", "per s", "streams", "reconnects", "protocol", "rate"),
            _chart(
                "Connection churn per protocol", "per interval", "streams", _CHURN, "protocol",
                "sum",
            ),
        ),
    ),
    (
        "Deploy & storms",
        (
            _chart(
                "Connections per target replica", "connections", "targets",
                "active_connections", "replica", "mean",
            ),
            _chart(
                "Accept rate per target replica", "conn/s", "targets", "accepted", "replica",
                "rate",
            ),
            _chart(
                "Replica readiness and draining", "0/1", "targets",
                "ready:ready draining:draining", "replica",
            ),
            _chart(
                "Server requests per target replica", "req/s", "targets", "requests", "replica",
                "rate",
            ),
            _chart(
                "Connected clients per protocol", "clients", "streams", "connected", "protocol",
                "sum",
            ),
            _chart(
                "Client reconnects per protocol", "per s", "streams", "reconnects", "protocol",
                "rate",
            ),
            _chart(
                "Reconnect time p50 and p99 per protocol", "ms", "streams",
                "reconnect_p50:p50 reconnect_p99:p99", "protocol",
            ),
            Chart(
                "Errors during the deploy",
                "per interval",
                (
                    _Source("requests", (("failures", "failed-requests"),), "protocol", "sum"),
                    _Source(
                        "streams",
                        (
                            ("connect_failures", "failed-connects"),
                            ("missing", "lost-events"),
                            ("duplicates", "duplicates"),
                        ),
                        "protocol",
                        "sum",
                    ),
                ),
            ),
            _chart(
                "Resumes and replayed events per protocol", "per interval", "targets",
                "resumes:resumes replayed:replayed", "protocol", "sum",
            ),
        ),
    ),
    (
        "Generator health",
        (
            _chart(
                "Worker CPU (% of one core)", "%", "worker_health", "cpu_percent",
                "worker", "mean", line=(100.0, "saturated (100%)"),
            ),
            _chart(
                "Worker loop lag (p99)", "ms", "worker_health", "loop_lag_p99", "worker",
                line=(BOUNDS["loop_lag_p99_ms"], f"bound ({BOUNDS['loop_lag_p99_ms']:g} ms)"),
            ),
            _chart(
                "Worker memory (RSS)", "MiB", "worker_health", "rss_bytes", "worker", "mean",
                scale=1 / 2**20,
            ),
            _chart(
                "Connections held per worker", "streams", "worker_health", "connections",
                "worker", "mean",
            ),
            _chart(
                "Greenlets per worker", "greenlets", "worker_health", "greenlets", "worker",
                "mean",
            ),
            _chart(
                "Dropped arrival-rate starts per protocol", "starts/s", "requests", "dropped",
                "protocol", "rate",
            ),
            _chart("Metrics sink buffer", "points", "sink", "buffered", "name"),
            _chart(
                "Metrics sink drops and retries", "so far", "sink",
                "dropped:dropped retries:retries", "name",
            ),
        ),
    ),
    (
        "Protocol comparison",
        (
            _chart(
                "Delivered events per stream", "events/s", "streams", "delivered", "name", "rate"
            ),
            _chart(
                "Open connections per stream", "clients", "streams", "connected", "name", "mean"
            ),
        ),
    ),
)  # fmt: skip

#: Sections drawn only for runs that acted on their targets (deploy, storm, kill, scale).
_ACTION_SECTIONS = frozenset({"Deploy & storms"})
#: Annotation kinds that are run events, not actions on the targets.
_RUN_EVENTS = frozenset({"worker_lost", "worker_back", "threshold"})
#: A chart with more lines than this takes a whole row, so its legend fits.
_WIDE_AFTER = 6
_WIDTH, _WIDE_WIDTH = 620, 1252


def _label(tag: str, value: str) -> str:
    # Worker ids are long random hex: their tail tells them apart.
    return value[-8:] if tag == "worker" else value


def _aggregate(values: list[float], how: str, interval: float) -> float:
    if how == "rate":
        return sum(values) / interval
    if how == "sum":
        return sum(values)
    if how == "mean":
        return sum(values) / len(values)
    return max(values)


def chart_series(chart: Chart, results: RunResults) -> Series:
    """A chart's lines from the run's points, x in seconds since the first point.

    Points of one interval share a timestamp, so grouping by timestamp is grouping by
    interval: the same buckets the dashboards' ``GROUP BY time($__interval)`` makes.
    """
    return _Points(results).series(chart)


class _Points:
    """The run's points indexed by measurement, so each chart reads only its own."""

    def __init__(self, results: RunResults) -> None:
        self.start_ns = min((point.time_ns or 0 for point in results.points), default=0)
        self.interval = results.interval_s or 1.0
        self.by_measurement: dict[str, list[Point]] = defaultdict(list)
        for point in results.points:
            self.by_measurement[point.measurement].append(point)

    def series(self, chart: Chart) -> Series:
        buckets: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        how: dict[str, str] = {}
        for source in chart.sources:
            for point in self.by_measurement.get(source.measurement, ()):
                if not source.takes(point):
                    continue
                at = round(((point.time_ns or self.start_ns) - self.start_ns) / 1e9, 3)
                group = _label(source.by, point.tags.get(source.by, "?")) if source.by else ""
                for field_name, field_label in source.fields:
                    value = point.fields.get(field_name)
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        continue
                    line = " ".join(part for part in (group, field_label) if part) or field_name
                    buckets[line][at].append(float(value) * source.scale)
                    how[line] = source.how
        series: Series = {
            line: [
                (at, _aggregate(values, how[line], self.interval))
                for at, values in sorted(by_at.items())
            ]
            for line, by_at in buckets.items()
        }
        if chart.line is not None and series:
            value, label = chart.line
            x_max = max(at for points in series.values() for at, _ in points)
            series[label] = [(0.0, value), (max(x_max, 1.0), value)]
        return series


def _acted_on_targets(results: RunResults) -> bool:
    kinds = {str(note.get("kind", "")) for note in results.annotations}
    return bool(kinds - _RUN_EVENTS) or any(p.measurement == "targets" for p in results.points)


def _over_time(results: RunResults) -> list[str]:
    """The charts: a heading per dashboard, then its panels that have data in this run."""
    if not results.points:
        return []
    markers = _markers(results)
    acted = _acted_on_targets(results)
    points = _Points(results)
    drawn: set[str] = set()
    out = ["<h2>Over time</h2>"]
    for section, charts in CHART_SECTIONS:
        if section in _ACTION_SECTIONS and not acted:
            continue
        svgs = []
        for chart in charts:
            series = points.series(chart) if chart.title not in drawn else {}
            if not series:
                continue
            drawn.add(chart.title)
            width = _WIDE_WIDTH if len(series) > _WIDE_AFTER else _WIDTH
            svgs.append(
                line_chart(series, title=chart.title, unit=chart.unit, markers=markers, width=width)
            )
        if svgs:
            out += [f"<h3>{escape(section)}</h3><div class=charts>", *svgs, "</div>"]
    return out


#: Annotation kinds drawn on charts: the actions. Per-replica events would crowd every chart.
_MARKER_KINDS = frozenset({"deploy_start", "deploy_end", "storm", "kill", "scale", "action_error"})


def _markers(results: RunResults) -> list[tuple[float, str]]:
    if not results.points or not results.annotations:
        return []
    start = min(point.time_ns or 0 for point in results.points) / 1e9
    return [
        (float(note.get("at", start)) - start, str(note.get("kind", "")))
        for note in results.annotations
        if note.get("kind") in _MARKER_KINDS
    ]


def render_report(summary: dict[str, Any], results: RunResults | None) -> str:
    """The whole page as one string."""
    glance = headline(summary)
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>wirelab {escape(summary['run_id'])}: {glance.verdict}</title>"
        f"<style>{_CSS}</style></head><body>",
        *_header(summary, glance),
    ]
    out += _notes(summary)
    out += _thresholds(group_thresholds(summary["thresholds"]))
    out += _generator_section(summary.get("generator") or {})
    out += _request_table(summary)
    out += _stream_table(summary)
    out.append(deploy_html(summary.get("deploy"), results))
    if results is not None:
        out += _over_time(results)
    out.append("</body></html>")
    return "\n".join(out)


_VERDICT_CSS = {"PASSED": "pass", "FAILED": "fail", "GENERATOR-BOUND": "bound"}


def _card(label: str, value: str, detail: str = "", *, bad: bool = False) -> str:
    css = "card bad-card" if bad else "card"
    return (
        f"<div class='{css}'><div class=label>{escape(label)}</div>"
        f"<div class=value>{value}</div><div class=detail>{detail}</div></div>"
    )


def _generator_card(generator: dict[str, Any] | None) -> str:
    if not generator:
        return _card("generator", "—", "not measured in this run")
    verdict = str(generator.get("verdict", "—"))
    figures = []
    if generator.get("cpu_max") is not None:
        figures.append(f"CPU max {_fmt(float(generator['cpu_max']))}% of a core")
    if generator.get("loop_lag_p99_ms") is not None:
        figures.append(f"loop lag p99 {_fmt(float(generator['loop_lag_p99_ms']), 2)} ms")
    bound = verdict == "generator-bound"
    if bound and generator.get("share_affected") is not None:
        figures.append(f"{float(generator['share_affected']):.0%} of intervals over a bound")
    return _card("generator", escape(verdict), " · ".join(figures), bad=bound)


def _header(summary: dict[str, Any], glance: Headline) -> list[str]:
    css = _VERDICT_CSS.get(glance.verdict, "incomplete")
    error_rate = "–" if glance.error_rate is None else f"{glance.error_rate:.2%}"
    cards = [
        _card(
            "requests", _fmt(glance.requests), f"{_fmt(glance.failures)} failed · {error_rate}",
            bad=bool(glance.failures),
        ),
        _card(
            "events delivered", _fmt(glance.delivered),
            f"<span class={'bad' if glance.lost else 'good'}>{_fmt(glance.lost)} lost</span>",
            bad=bool(glance.lost),
        ),
        _generator_card(glance.generator),
        _card(
            "deploys & storms",
            _fmt(len(glance.actions)) if glance.actions else "none",
            "<br>".join(escape(line) for line in glance.actions) or "no scenario actions",
            bad=bool(glance.actions_failed),
        ),
    ]  # fmt: skip
    out = [
        "<header class=glance>",
        f"<h1>wirelab run {escape(summary['run_id'])} "
        f"<span class='verdict {css}'>{glance.verdict}</span></h1>",
        f"<div class=meta>scenario <b>{escape(summary['scenario'])}</b> · "
        f"{summary['duration_s']:g}s · model: {escape(summary['model'])} · "
        f"finished {escape(summary['finished_at'])} · exit code {glance.exit_code}</div>",
        f"<p class=reason>{escape(glance.reason[:1].upper() + glance.reason[1:])}.</p>",
        "<div class=cards>",
        *cards,
        "</div>",
    ]
    if glance.worst:
        out.append(
            "<table class=worst><tr><th>worst p99</th><th>request (ms)</th><th></th>"
            "<th>delivery lag (ms)</th><th></th></tr>"
        )
        for worst in glance.worst:
            out.append(
                f"<tr><td>{escape(worst.protocol)}</td>"
                f"<td>{_fmt(worst.request_p99_ms, 2)}</td>"
                f"<td class='meta name'>{escape(worst.request or '')}</td>"
                f"<td>{_fmt(worst.lag_p99_ms, 2)}</td>"
                f"<td class='meta name'>{escape(worst.stream or '')}</td></tr>"
            )
        out.append("</table>")
        if glance.held:
            out.append(
                f"<div class=meta>Not ranked: {escape(', '.join(glance.held))} (held by the "
                "server until news; see the requests table).</div>"
            )
    out.append("</header>")
    return out


def _mark(passed: bool) -> str:
    return "<span class=good>pass</span>" if passed else "<span class=bad>FAIL</span>"


def _thresholds(groups: list[ThresholdGroup]) -> list[str]:
    """One row per expression, in the order written; every subject behind a disclosure."""
    out = ["<h2>Thresholds</h2>"]
    if not groups:
        return [*out, "<p>No thresholds were set.</p>"]
    out.append(
        "<table class=thresholds><tr><th>result</th><th>threshold</th><th>worst subject</th>"
        "<th>observed</th><th>subjects</th></tr>"
    )
    for group in groups:
        worst = group.worst
        total = len(group.subjects)
        if total == 1:
            subjects = "1"
        else:
            count = f"{group.failed} of {total} failed" if group.failed else f"all {total} held"
            rows = "".join(
                f"<tr><td>{_mark(row['passed'])}</td><td>{escape(str(row['subject']))}</td>"
                f"<td>{escape(str(row['detail']))}</td></tr>"
                for row in group.subjects
            )
            subjects = (
                f"<details><summary>{count}</summary><table class=subjects>{rows}</table></details>"
            )
        out.append(
            f"<tr class={'pass-row' if group.passed else 'fail-row'}>"
            f"<td>{_mark(group.passed)}</td><td><code>{escape(group.expression)}</code></td>"
            f"<td>{escape(group.worst_subject)}</td><td>{escape(str(worst['detail']))}</td>"
            f"<td>{subjects}</td></tr>"
        )
    out.append("</table>")
    return out


def _notes(summary: dict[str, Any]) -> list[str]:
    notes = [
        f"<div class=note>The run did not complete: {escape(reason)}.</div>"
        for reason in summary["incomplete"]
    ]
    for lost in summary["workers"]["lost"]:
        notes.append(
            f"<div class=note>Worker {escape(str(lost.get('worker')))} was lost during the run; "
            "its counts up to its last report are kept.</div>"
        )
    for sink in summary["sinks"]:
        for outage in sink.get("outages", ()):
            end = outage.get("end")
            length = f"{end - outage['start']:.1f}s" if end else "until the end of the run"
            notes.append(
                f"<div class=note>Metrics sink {escape(str(sink.get('name')))} was unreachable for "
                f"{length}; points were buffered and retried.</div>"
            )
        if sink.get("dropped"):
            notes.append(
                f"<div class=note>Metrics sink {escape(str(sink.get('name')))} dropped "
                f"{sink['dropped']:,} points (buffer full or rejected).</div>"
            )
    dropped = sum(row.get("dropped", 0) for row in summary["requests"])
    if summary["model"].startswith("open"):
        notes.append(f"<div class=note>Open model: {escape(OPEN_MODEL_NOTE)}</div>")
    if dropped:
        notes.append(
            f"<div class=note>{dropped:,} scheduled request starts were dropped because the "
            "generator could not keep up: the target saw less load than asked for.</div>"
        )
    retried = retried_note(summary["requests"])
    if retried:
        notes.append(f"<div class=note>{escape(retried)}</div>")
    return notes


def _generator_section(generator: dict[str, Any]) -> list[str]:
    """The generator verdict: was the load generator, not the target, the bottleneck?"""
    if not generator:
        return []
    out = ["<h2>Generator</h2>"]
    verdict = generator.get("verdict", "")
    if verdict == UNMEASURED:
        out.append(f"<p>Not measured: {escape('; '.join(generator.get('reasons', ())))}.</p>")
        return out
    # A summary from another writer may carry fewer keys: the defaults say what is known.
    bounds = generator.get("bounds") or BOUNDS
    mark = "bad" if verdict == GENERATOR_BOUND else "good"
    out.append(
        f"<p><span class={mark}>{escape(verdict)}</span> · bounds: CPU "
        f"{bounds['cpu_percent']:g}% of one core, loop-lag p99 {bounds['loop_lag_p99_ms']:g} ms "
        f"· share of the run affected: {generator.get('share_affected') or 0.0:.0%}</p>"
    )
    if verdict == GENERATOR_BOUND:
        out.append(f"<div class=note>{escape(generator_claim(generator))}</div>")
        out += [f"<div class=note>{escape(r)}</div>" for r in generator.get("reasons", ())]
    out += [f"<div class=note>Note: {escape(note)}.</div>" for note in generator.get("notes", ())]
    out.append(
        "<table><tr><th>worker</th><th>CPU max %</th><th>CPU mean %</th><th>loop lag p50 ms</th>"
        "<th>p99 ms</th><th>max ms</th><th>host lag p99 ms</th><th>intervals over a bound</th>"
        "<th>bound</th></tr>"
    )
    for name, row in generator.get("workers", {}).items():
        over = f"{row['intervals_over']} of {row['intervals']}" if "intervals" in row else "—"
        cells = [
            escape(name),
            _fmt(row.get("cpu_max")),
            _fmt(row.get("cpu_mean")),
            _fmt(row.get("loop_lag_p50_ms"), 2),
            _fmt(row.get("loop_lag_p99_ms"), 2),
            _fmt(row.get("loop_lag_max_ms"), 1),
            _fmt(row.get("host_lag_p99_ms"), 2),
            over,
            "<span class=bad>yes</span>" if row.get("bound") else "<span class=good>no</span>",
        ]
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    out.append("</table>")
    return out


def _request_table(summary: dict[str, Any]) -> list[str]:
    rows = summary["requests"]
    if not rows:
        return []
    open_model = any("service_ms" in row for row in rows)
    head = "<tr><th>name</th><th>protocol</th><th>count</th><th>failures</th><th>req/s</th>"
    head += "".join(f"<th>{q}</th>" for q in ("p50", "p90", "p95", "p99", "p99.9", "max"))
    if open_model:
        head += "<th>svc p50</th><th>svc p99</th><th>dropped</th>"
    out = ["<h2>Requests (ms)</h2><table>", head + "</tr>"]
    for row in rows:
        lat = row["latency_ms"]
        failures = row["failures"]
        held = " <span class=tag>held</span>" if is_held(row["name"]) else ""
        cells = [
            escape(row["name"]) + held,
            escape(row["protocol"]),
            _fmt(row["count"]),
            f"<span class={'bad' if failures else 'good'}>{_fmt(failures)}</span>",
            _fmt(row["rps"]),
            *(_fmt(lat[k], 2) for k in ("p50", "p90", "p95", "p99", "p999", "max")),
        ]
        if open_model:
            svc = row.get("service_ms") or {}
            cells += [_fmt(svc.get("p50"), 2), _fmt(svc.get("p99"), 2), _fmt(row.get("dropped", 0))]
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    out.append("</table>")
    held = sorted(row["name"] for row in rows if is_held(row["name"]))
    if held:
        out.append(
            f"<div class=meta><span class=tag>held</span> {escape(', '.join(held))}: long "
            "polls, which the server holds until there is news. Their time is mostly that wait, "
            "by design, not latency: the latency charts leave them out and "
            f"“{escape(HOLD_CHART)}” draws them apart.</div>"
        )
    return out


def _stream_table(summary: dict[str, Any]) -> list[str]:
    rows = summary["streams"]
    if not rows:
        return []
    columns = (
        "delivered",
        "missing",
        "duplicates",
        "out_of_order",
        "resets",
        "reset_lost",
        "reconnects",
    )
    out = [
        "<h2>Streams</h2><table><tr><th>name</th><th>protocol</th>"
        + "".join(f"<th>{c.replace('_', ' ')}</th>" for c in columns)
        + "<th>lag p50 ms</th><th>lag p99 ms</th><th>reconnect p99 ms</th></tr>"
    ]
    for row in rows:
        cells = [escape(row["name"]), escape(row["protocol"])]
        for column in columns:
            value = row[column]
            bad = column in {"missing", "duplicates", "out_of_order", "reset_lost"} and value
            cells.append(f"<span class={'bad' if bad else ''}>{_fmt(value)}</span>")
        cells += [
            _fmt(row["lag_ms"]["p50"], 2),
            _fmt(row["lag_ms"]["p99"], 2),
            _fmt(row["reconnect_ms"]["p99"], 1),
        ]
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    out.append("</table>")
    return out
