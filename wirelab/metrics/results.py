"""Reading a finished run back: ``metrics.json`` and ``timeseries.lp`` of its report dir.

The report, the thresholds and ``wirelab influx push`` start here::

    results = load_results(Path("reports/run-42"))
    p99 = results.requests[("ws", "ws echo")].latency.quantile(0.99) / 1000  # ms
    dropped = results.dropped_points
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .generator import GeneratorHealth
from .lineprotocol import Point, parse
from .series import RequestSeries, SeriesKey, StreamSeries

__all__ = ["RunResults", "load_results"]

#: The files of a run directory that the plugin writes and everything else reads.
METRICS_FILE = "metrics.json"
TIMESERIES_FILE = "timeseries.lp"
#: The files the report (:mod:`wirelab.report.build`) writes beside them.
SUMMARY_FILE = "summary.json"
JUNIT_FILE = "junit.xml"
REPORT_FILE = "report.html"


@dataclass
class RunResults:
    """A finished run, as the master recorded it.

    Attributes:
        run_dir: the report directory read.
        run_id, scenario: the run's tags.
        interval_s: seconds between points.
        started_at, ended_at: epoch seconds of the first interval and of the end.
        complete: ``metrics.json`` was found (a run that crashed has only its time series).
        requests: run totals per ``(protocol, name)``: counts plus exact merged histograms
            (``latency`` from the intended start in open-model runs; ``service`` from the
            actual send, only in open-model runs). Values in µs; divide by 1000 for ms.
        streams: run totals per stream ``(protocol, name)``; ``connected`` holds the peak
            number of open streams seen at an interval boundary.
        request_summaries: per request ``(protocol, name)``, the figures computed at the end
            of the run: ``ms`` (latency) and, open model only, ``svc_ms`` (service time), each
            a dict of p50/p90/p95/p99/p999/max/min/mean in ms.
        stream_summaries: per stream, ``lag_ms`` and ``reconnect_ms`` of the same form.
        points: every point of ``timeseries.lp`` in file order (see
            :mod:`wirelab.metrics.lineprotocol` for the schema).
        annotations: scenario actions and run events, each ``{"at": epoch_s, "time_ns",
            "kind", "text", "tags"}``, in the order they happened.
        workers_seen: ids of every worker that reported.
        workers_lost: ``{"worker": id, "at": epoch_s}`` (plus ``back_at`` if it came back).
        reports: worker reports the master merged.
        sinks: per sink: ``name``, ``url``, ``kind``, ``written``, ``retries``, ``buffered``,
            ``buffered_max``, ``max_points``, ``dropped`` (= ``dropped_overflow`` +
            ``dropped_rejected`` + ``dropped_unsent``), ``last_error`` and ``outages``: a list
            of ``{"start", "end", "error", "attempts"}`` (epoch s; ``end`` None if the run
            ended first).
        generator: every worker's CPU and loop lag per interval while users ran, and the
            merged loop-lag histograms (``None`` for runs recorded before it existed); judge
            it with :func:`wirelab.metrics.generator.judge`.
    """

    run_dir: Path
    run_id: str = ""
    scenario: str = ""
    interval_s: float = 1.0
    started_at: float | None = None
    ended_at: float | None = None
    complete: bool = False
    requests: dict[SeriesKey, RequestSeries] = field(default_factory=dict)
    streams: dict[SeriesKey, StreamSeries] = field(default_factory=dict)
    request_summaries: dict[SeriesKey, dict[str, Any]] = field(default_factory=dict)
    stream_summaries: dict[SeriesKey, dict[str, Any]] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    workers_seen: list[str] = field(default_factory=list)
    workers_lost: list[dict[str, Any]] = field(default_factory=list)
    reports: int = 0
    sinks: list[dict[str, Any]] = field(default_factory=list)
    generator: GeneratorHealth | None = None

    @property
    def dropped_points(self) -> int:
        """Points some sink lost (0 means every sink got everything)."""
        return sum(int(sink.get("dropped", 0)) for sink in self.sinks)

    @property
    def outages(self) -> list[dict[str, Any]]:
        """Every sink outage, each with the sink's ``name`` added."""
        return [
            {"sink": sink.get("name", ""), **outage}
            for sink in self.sinks
            for outage in sink.get("outages", ())
        ]

    def series(self, measurement: str, **tags: str) -> list[Point]:
        """Points of ``measurement`` whose tags include all of ``tags``, in time order."""
        found = [
            point
            for point in self.points
            if point.measurement == measurement
            and all(point.tags.get(key) == value for key, value in tags.items())
        ]
        return sorted(found, key=lambda point: point.time_ns or 0)


def load_results(run_dir: Path | str) -> RunResults:
    """Read a run directory written by the plugin.

    Raises:
        FileNotFoundError: the directory holds neither ``metrics.json`` nor ``timeseries.lp``.
        ValueError: a file is not what the plugin writes.
    """
    run_dir = Path(run_dir)
    metrics_path = run_dir / METRICS_FILE
    timeseries_path = run_dir / TIMESERIES_FILE
    if not metrics_path.is_file() and not timeseries_path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a wirelab run directory (no {METRICS_FILE} or {TIMESERIES_FILE})"
        )
    results = RunResults(run_dir=run_dir)
    if metrics_path.is_file():
        try:
            data = orjson.loads(metrics_path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{metrics_path}: not JSON ({exc})") from exc
        _read_metrics(results, data)
    if timeseries_path.is_file():
        with timeseries_path.open(encoding="utf-8") as lines:
            results.points = list(parse(lines))
        if not results.run_id and results.points:
            results.run_id = results.points[0].tags.get("run_id", "")
            results.scenario = results.points[0].tags.get("scenario", "")
    return results


def _read_metrics(results: RunResults, data: dict[str, Any]) -> None:
    results.complete = True
    results.run_id = data.get("run_id", "")
    results.scenario = data.get("scenario", "")
    results.interval_s = float(data.get("interval_s", 1.0))
    results.started_at = data.get("started_at")
    results.ended_at = data.get("ended_at")
    totals = data.get("totals", {})
    for wire in totals.get("requests", ()):
        series = RequestSeries.from_wire(wire)
        results.requests[series.key] = series
        results.request_summaries[series.key] = {k: wire[k] for k in ("ms", "svc_ms") if k in wire}
    for wire in totals.get("streams", ()):
        series = StreamSeries.from_wire(wire)
        series.connected = int(wire.get("connected_peak", series.connected))
        results.streams[series.key] = series
        results.stream_summaries[series.key] = {
            k: wire[k] for k in ("lag_ms", "reconnect_ms") if k in wire
        }
    workers = data.get("workers", {})
    results.workers_seen = list(workers.get("seen", ()))
    results.workers_lost = list(workers.get("lost", ()))
    results.reports = int(workers.get("reports", 0))
    results.annotations = list(data.get("annotations", ()))
    results.sinks = list(data.get("sinks", ()))
    if data.get("generator"):
        try:
            results.generator = GeneratorHealth.from_wire(data["generator"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{METRICS_FILE}: the generator record is malformed ({exc})") from exc
