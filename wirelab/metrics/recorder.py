"""Where measurements are recorded (every process) and merged (the master).

Users record into their process's :class:`Recorder`. Each report interval the Locust plugin
takes the delta since the last report (:meth:`Recorder.take_delta`) and ships it in the
worker report; the master adds every delta into one :class:`Aggregate`, exactly, and keeps
both the run's totals and the current interval's figures for the sinks.
"""

from __future__ import annotations

from typing import Any

from .histogram import LogHistogram
from .series import STREAM_COUNTERS, RequestSeries, SeriesKey, StreamSeries


class Recorder:
    """One process's measurements since the last delta was taken.

    Series objects live as long as the recorder (``take_delta`` empties them in place), so
    a user may keep the :class:`StreamSeries` it got from :meth:`stream`.
    """

    def __init__(self) -> None:
        self._requests: dict[SeriesKey, RequestSeries] = {}
        self._streams: dict[SeriesKey, StreamSeries] = {}

    def request(
        self,
        protocol: str,
        name: str,
        latency_s: float,
        *,
        ok: bool = True,
        size: int = 0,
        service_s: float | None = None,
        error: str | None = None,
        retried: bool = False,
    ) -> None:
        """One request/response; ``latency_s`` from the intended start in open-model runs.

        ``retried``: it was sent twice because the server went away before replying."""
        series = self._requests.get((protocol, name))
        if series is None:
            series = self._requests[(protocol, name)] = RequestSeries(protocol, name)
        series.record(
            latency_s * 1e6,
            ok=ok,
            size=size,
            service_us=None if service_s is None else service_s * 1e6,
            error=error,
            retried=retried,
        )

    def dropped(self, protocol: str, name: str, count: int = 1) -> None:
        """Open model: ``count`` starts could not be made on time."""
        series = self._requests.get((protocol, name))
        if series is None:
            series = self._requests[(protocol, name)] = RequestSeries(protocol, name)
        series.dropped += count

    def stream(self, protocol: str, name: str) -> StreamSeries:
        """The stream series for ``(protocol, name)``, created on first use."""
        series = self._streams.get((protocol, name))
        if series is None:
            series = self._streams[(protocol, name)] = StreamSeries(protocol, name)
        return series

    def take_delta(self) -> dict[str, Any]:
        """Everything recorded since the last call, in wire form; counters restart at zero.

        Gauges (connected streams) are sent as current values and not reset.
        """
        requests = []
        for series in self._requests.values():
            if series.count or series.dropped:
                requests.append(series.to_wire())
                _clear_request(series)
        streams = []
        for series in self._streams.values():
            streams.append(series.to_wire())
            _clear_stream(series)
        return {"requests": requests, "streams": streams}

    def connections(self) -> int:
        """Streams this process holds open now (the sum of its ``connected`` gauges)."""
        return sum(series.connected for series in self._streams.values())


def _clear_request(series: RequestSeries) -> None:
    series.count = series.failures = series.bytes = series.dropped = 0
    series.latency = LogHistogram(series.latency.relative_error)
    series.service = LogHistogram(series.service.relative_error)
    series.errors = {}


def _clear_stream(series: StreamSeries) -> None:
    for name in STREAM_COUNTERS:
        setattr(series, name, 0)
    series.lag = LogHistogram(series.lag.relative_error)
    series.reconnect_time = LogHistogram(series.reconnect_time.relative_error)


_process_recorder: Recorder | None = None


def recorder() -> Recorder:
    """This process's recorder (one per process, created on first use)."""
    global _process_recorder  # noqa: PLW0603 - one recorder per process is the point
    if _process_recorder is None:
        _process_recorder = Recorder()
    return _process_recorder


class Aggregate:
    """The master's merge of every worker's deltas: run totals plus the open interval.

    A delta is merged once, into the open interval; the interval is folded into the run's
    totals when it is taken. So the master's cost per worker report is one decode and one
    merge per series, and the totals cost one merge per series per interval, however many
    workers report. Reading :attr:`requests`/:attr:`streams` mid-interval includes the open
    interval.
    """

    def __init__(self) -> None:
        self._done_requests: dict[SeriesKey, RequestSeries] = {}
        self._done_streams: dict[SeriesKey, StreamSeries] = {}
        self.interval_requests: dict[SeriesKey, RequestSeries] = {}
        self.interval_streams: dict[SeriesKey, StreamSeries] = {}
        #: Latest ``connected`` gauge per worker and stream; summed for the run's value.
        self.connected: dict[str, dict[SeriesKey, int]] = {}
        #: Highest summed ``connected`` seen at an interval boundary, per stream.
        self.connected_peak: dict[SeriesKey, int] = {}
        #: Latest health sample per worker (CPU, RSS, greenlets, connections).
        self.health: dict[str, dict[str, Any]] = {}
        #: Health samples received since the last :meth:`take_health`.
        self.interval_health: dict[str, dict[str, Any]] = {}
        #: Every worker that ever reported.
        self.workers: set[str] = set()
        self.reports = 0

    @property
    def requests(self) -> dict[SeriesKey, RequestSeries]:
        """Run totals per request series (a fresh dict when an interval is open)."""
        if not self.interval_requests:
            return self._done_requests
        totals = {key: _copy_request(series) for key, series in self._done_requests.items()}
        _fold(totals, self.interval_requests, _copy_request, RequestSeries.merge)
        return totals

    @property
    def streams(self) -> dict[SeriesKey, StreamSeries]:
        """Run totals per stream series; ``connected`` there is 0 (see :meth:`connected_now`)."""
        if not self.interval_streams:
            return self._done_streams
        totals = {key: _copy_stream(series) for key, series in self._done_streams.items()}
        _fold(totals, self.interval_streams, _copy_stream, _merge_counters)
        return totals

    def add(self, worker: str, delta: dict[str, Any]) -> None:
        """Merge one worker's delta (as produced by :meth:`Recorder.take_delta`)."""
        self.reports += 1
        self.workers.add(worker)
        interval_requests = self.interval_requests
        for data in delta.get("requests", ()):
            series = RequestSeries.from_wire(data)
            current = interval_requests.get(series.key)
            if current is None:
                interval_requests[series.key] = series  # decoded just now: ours to keep
            else:
                current.merge(series)
        gauges = self.connected.setdefault(worker, {})
        interval_streams = self.interval_streams
        for data in delta.get("streams", ()):
            series = StreamSeries.from_wire(data)
            gauges[series.key] = series.connected
            series.connected = 0  # gauges are summed per worker in take_interval
            current = interval_streams.get(series.key)
            if current is None:
                interval_streams[series.key] = series
            else:
                current.merge(series, gauges=False)
        if "health" in delta:
            self.health[worker] = delta["health"]
            self.interval_health[worker] = delta["health"]

    def forget_worker(self, worker: str) -> None:
        """A worker is gone: its open streams no longer count; its counts stay in the totals."""
        self.connected.pop(worker, None)
        self.health.pop(worker, None)
        self.interval_health.pop(worker, None)

    def connected_now(self, key: SeriesKey) -> int:
        """Open streams of ``key`` across the workers still counted."""
        return sum(gauges.get(key, 0) for gauges in self.connected.values())

    def take_health(self) -> dict[str, dict[str, Any]]:
        """Health samples per worker received since the last call."""
        health, self.interval_health = self.interval_health, {}
        return health

    def take_interval(self) -> tuple[dict[SeriesKey, RequestSeries], dict[SeriesKey, StreamSeries]]:
        """The figures merged since the last call (for one sink write); starts a new interval.

        The returned series belong to the caller; the totals keep their own copies.
        """
        requests, streams = self.interval_requests, self.interval_streams
        self.interval_requests, self.interval_streams = {}, {}
        _fold(self._done_requests, requests, _copy_request, RequestSeries.merge)
        _fold(self._done_streams, streams, _copy_stream, _merge_counters)
        for key, series in streams.items():
            series.connected = self.connected_now(key)
            if series.connected > self.connected_peak.get(key, 0):
                self.connected_peak[key] = series.connected
        return requests, streams


def _copy_request(series: RequestSeries) -> RequestSeries:
    return RequestSeries.from_wire(series.to_wire())


def _copy_stream(series: StreamSeries) -> StreamSeries:
    copy = StreamSeries.from_wire(series.to_wire())
    copy.connected = 0
    return copy


def _merge_counters(total: StreamSeries, series: StreamSeries) -> None:
    total.merge(series, gauges=False)


def _fold(totals: dict, interval: dict, copy: Any, merge: Any) -> None:
    for key, series in interval.items():
        total = totals.get(key)
        if total is None:
            totals[key] = copy(series)
        else:
            merge(total, series)
