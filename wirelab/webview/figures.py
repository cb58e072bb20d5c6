"""The live figures of a run, as the master has merged them so far.

:class:`LiveFigures` reads the metrics plugin's :class:`~wirelab.metrics.plugin.RunMetrics`
(the same exact aggregate ``metrics.json`` is written from at the end), Locust's runner (its
state, its workers and its own statistics, shown beside wirelab's) and the generator's live
status, and turns them into one JSON-ready dict. Percentiles use the report's own
:func:`~wirelab.report.summary.histogram_ms`, so the view's last figures are the figures of
``summary.json``; thresholds are judged with :func:`wirelab.thresholds.evaluate` and grouped
as the report groups them.

Cost: one snapshot is a copy of the run's totals plus the open interval, one threshold pass
and one read of Locust's statistics, however many workers report. Snapshots are kept for
:data:`CACHE_S`, so several browsers (and Locust's own tabs) share one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..metrics.plugin import LOCAL_WORKER, RunMetrics, current_run, plugin_loaded
from ..metrics.series import STREAM_COUNTERS, RequestSeries, SeriesKey, StreamSeries
from ..report.glance import group_thresholds, is_held, protocol_order
from ..report.summary import histogram_ms
from ..thresholds import Threshold, evaluate

__all__ = ["CACHE_S", "HEALTH_FIGURES", "LiveFigures", "generator_status"]

log = logging.getLogger(__name__)

#: Seconds a snapshot is reused: the page asks every second; more viewers share the work.
CACHE_S = 0.5
#: A worker's health figures, as the worker report's health sample names them
#: (:mod:`wirelab.metrics.health`, loop lag included); a figure a worker does not send is
#: ``None``, shown as "—".
HEALTH_FIGURES = (
    "cpu_percent",
    "rss_bytes",
    "connections",
    "greenlets",
    "loop_lag_p50_ms",
    "loop_lag_p99_ms",
    "loop_lag_max_ms",
)
_LATENCY = ("p50", "p99", "p999")
_LAG = ("p50", "p99")


def generator_status() -> dict[str, Any] | None:
    """The generator's live verdict (``wirelab.metrics.generator.generator_status()``), or
    ``None`` where that module does not exist or cannot say yet."""
    try:
        from ..metrics.generator import generator_status as status  # noqa: PLC0415
    except ImportError:
        return None
    try:
        value = status()
    except Exception:
        log.debug("generator status unavailable", exc_info=True)
        return None
    return value if isinstance(value, dict) else None


def _pick(figures: dict[str, float | None], keys: tuple[str, ...]) -> dict[str, float | None]:
    return {key: figures.get(key) for key in keys}


def _locust_figures(entry: Any) -> dict[str, Any] | None:
    """Locust's own figures of one request name (its percentiles are rounded, and capped in
    what they keep: shown for comparison, never used for a verdict)."""
    if entry is None or not entry.num_requests:
        return None
    return {
        "count": entry.num_requests,
        "failures": entry.num_failures,
        "ms": {
            name: float(entry.get_response_time_percentile(q))
            for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999))
        },
    }


class LiveFigures:
    """The live figures of the run in ``environment``; one per Locust process.

    ``thresholds``/``threshold_errors``: as :func:`.settings.thresholds_from_environment`
    returns them. ``generator``: where the generator's verdict comes from (tests pass their
    own). ``clock``: epoch seconds.
    """

    def __init__(
        self,
        environment: Any,
        thresholds: list[Threshold],
        threshold_errors: list[str] | None = None,
        *,
        generator: Callable[[], dict[str, Any] | None] = generator_status,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.environment = environment
        self.thresholds = thresholds
        self.threshold_errors = list(threshold_errors or ())
        self.generator = generator
        self.clock = clock
        #: When the last test stopped (``None`` while one runs): the run's figures per
        #: second stop there, not at whenever someone looks.
        self.stopped_at: float | None = None
        self._cached: dict[str, Any] | None = None
        self._cached_at = -1.0

    # -- Locust's events ---------------------------------------------------------------

    def on_test_start(self, **_: Any) -> None:
        self.stopped_at = None
        self._cached = None

    def on_test_stop(self, **_: Any) -> None:
        self.stopped_at = self.clock()
        self._cached = None

    # -- the figures -----------------------------------------------------------------------

    def snapshot(self, since: int = 0) -> dict[str, Any]:
        """Everything the view shows, with the annotations from index ``since`` on."""
        now = self.clock()
        if self._cached is None or not 0 <= now - self._cached_at < CACHE_S:
            self._cached = self._compute(now)
            self._cached_at = now
        run = current_run(self.environment.events)
        annotations = list(run.annotations) if run is not None else []
        since = max(0, min(since, len(annotations)))
        started = self._cached["run"]["started_at"]
        return {
            **self._cached,
            "annotations": {
                "total": len(annotations),
                "from": since,
                "items": [self._annotation(note, started) for note in annotations[since:]],
            },
        }

    def _compute(self, now: float) -> dict[str, Any]:
        run = current_run(self.environment.events)
        runner = self.environment.runner
        generator = self.generator()
        if run is None:
            return {
                "version": 1,
                "now": now,
                # A web UI's master has no run before its first test; the plugin is there.
                "run": {
                    **self._run_info(None, runner, now),
                    "plugin": plugin_loaded(self.environment.events),
                },
                "streams": [],
                "requests": [],
                "workers": [],
                "generator": generator,
                "thresholds": self._thresholds(None, None, 0.0),
            }
        info = self._run_info(run, runner, now)
        # The totals once per snapshot: each read of them copies every series.
        requests, streams = run.aggregate.requests, run.aggregate.streams
        return {
            "version": 1,
            "now": now,
            "run": info,
            "streams": self._streams(run, streams, runner),
            "requests": self._requests(requests, runner),
            "workers": self._workers(run, runner, generator),
            "generator": generator,
            "thresholds": self._thresholds(requests, streams, info["elapsed_s"], generator),
        }

    def _run_info(self, run: RunMetrics | None, runner: Any, now: float) -> dict[str, Any]:
        started = run.started_at if run is not None else None
        end = now
        if run is not None and run.ended_at is not None:
            end = run.ended_at
        elif self.stopped_at is not None:
            end = self.stopped_at
        elapsed = max(0.0, end - started) if started is not None else 0.0
        clients = getattr(runner, "clients", None)
        return {
            "plugin": True,
            "run_id": run.config.run_id if run is not None else "",
            "scenario": run.config.scenario if run is not None else "",
            "interval_s": run.config.interval if run is not None else None,
            "state": getattr(runner, "state", "") or "",
            "users": int(getattr(runner, "user_count", 0) or 0),
            "workers": len(clients) if clients is not None else None,
            "started_at": started,
            "elapsed_s": round(elapsed, 3),
            "reports": run.aggregate.reports if run is not None else 0,
        }

    @staticmethod
    def _locust_entry(runner: Any, name: str, protocol: str) -> Any:
        entries = getattr(getattr(runner, "stats", None), "entries", None)
        # entries.get, never stats.get: that would create an empty row in Locust's table.
        return entries.get((name, protocol)) if entries is not None else None

    def _streams(
        self, run: RunMetrics, streams: dict[SeriesKey, StreamSeries], runner: Any
    ) -> list[dict[str, Any]]:
        aggregate = run.aggregate
        rows = []
        for series in streams.values():
            row: dict[str, Any] = {"protocol": series.protocol, "name": series.name}
            for counter in STREAM_COUNTERS:
                row[counter] = getattr(series, counter)
            row["lost"] = series.missing + series.reset_lost
            row["connected"] = aggregate.connected_now(series.key)
            row["lag_ms"] = _pick(histogram_ms(series.lag, _LAG), _LAG)
            # A stream's lag events carry its name, or "<name> deliver" (polling).
            entry = self._locust_entry(runner, f"{series.name} deliver", series.protocol)
            if entry is None:
                entry = self._locust_entry(runner, series.name, series.protocol)
            locust_row = _locust_figures(entry)
            row["locust_lag_ms"] = _pick(locust_row["ms"], _LAG) if locust_row else None
            rows.append(row)
        return sorted(rows, key=lambda r: (protocol_order(r["protocol"]), r["name"]))

    def _requests(
        self, requests: dict[SeriesKey, RequestSeries], runner: Any
    ) -> list[dict[str, Any]]:
        rows = []
        for series in requests.values():
            rows.append(
                {
                    "protocol": series.protocol,
                    "name": series.name,
                    "held": is_held(series.name),
                    "count": series.count,
                    "failures": series.failures,
                    "error_rate": series.failures / series.count if series.count else None,
                    "latency_ms": _pick(histogram_ms(series.latency, _LATENCY), _LATENCY),
                    "locust": _locust_figures(
                        self._locust_entry(runner, series.name, series.protocol)
                    ),
                }
            )
        return sorted(rows, key=lambda r: (protocol_order(r["protocol"]), r["name"]))

    def _workers(
        self, run: RunMetrics, runner: Any, generator: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        aggregate = run.aggregate
        nodes = {node.id: node for node in getattr(getattr(runner, "clients", None), "all", ())}
        verdicts = (generator or {}).get("workers") or {}
        rows = []
        for worker in sorted(set(aggregate.workers) | set(nodes)):
            node = nodes.get(worker)
            lost = run.lost.get(worker)
            if lost is not None and "back_at" not in lost:
                state = "lost"
            elif node is not None:
                state = str(node.state)
            elif worker == LOCAL_WORKER:
                state = str(getattr(runner, "state", ""))
            else:
                state = "gone"
            health = aggregate.health.get(worker) or {}
            verdict = verdicts.get(worker) or {}
            rows.append(
                {
                    "id": worker,
                    "state": state,
                    "users": node.user_count if node is not None else None,
                    **{key: health.get(key) for key in HEALTH_FIGURES},
                    "bound": verdict.get("bound"),
                }
            )
        return rows

    def _thresholds(
        self,
        requests: dict[SeriesKey, RequestSeries] | None,
        streams: dict[SeriesKey, StreamSeries] | None,
        elapsed_s: float,
        generator: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        groups: list[dict[str, Any]] = []
        if requests is not None and streams is not None and self.thresholds:
            verdicts = evaluate(
                self.thresholds, requests, streams, duration_s=elapsed_s, generator=generator
            )
            for group in group_thresholds(verdict.to_dict() for verdict in verdicts):
                entry = group.to_dict()
                # No figure yet is not a failure while the run is young: it waits.
                waiting = all(row["observed"] is None for row in group.subjects)
                entry["state"] = "holding" if group.passed else "no data" if waiting else "failing"
                groups.append(entry)
        elif self.thresholds:
            groups = [
                {"expression": t.expression, "state": "no data", "subjects": [], "total": 0}
                for t in self.thresholds
            ]
        counts = {state: 0 for state in ("holding", "failing", "no data")}
        for group in groups:
            counts[group["state"]] += 1
        return {"groups": groups, "errors": self.threshold_errors, "counts": counts}

    @staticmethod
    def _annotation(note: dict[str, Any], started: float | None) -> dict[str, Any]:
        at = float(note.get("at", 0.0))
        return {
            "at": at,
            "at_s": round(at - started, 3) if started is not None else None,
            "kind": note.get("kind", ""),
            "text": note.get("text", ""),
            "tags": note.get("tags") or {},
        }
