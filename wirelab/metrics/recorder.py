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
    ) -> None:
        """One request/response; ``latency_s`` from the intended start in open-model runs."""
        series = self._requests.get((protocol, name))
        if series is None:
            series = self._requests[(protocol, name)] = RequestSeries(protocol, name)
        series.record(
            latency_s * 1e6,
            ok=ok,
            size=size,
            service_us=None if service_s is None else service_s * 1e6,
            error=error,
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
    """The master's merge of every worker's deltas: run totals plus the open interval."""

    def __init__(self) -> None:
        self.requests: dict[SeriesKey, RequestSeries] = {}
        self.streams: dict[SeriesKey, StreamSeries] = {}
        self.interval_requests: dict[SeriesKey, RequestSeries] = {}
        self.interval_streams: dict[SeriesKey, StreamSeries] = {}
        #: Latest ``connected`` gauge per worker and stream; summed for the run's value.
        self.connected: dict[str, dict[SeriesKey, int]] = {}
        #: Latest health sample per worker (CPU, RSS, greenlets, connections).
        self.health: dict[str, dict[str, Any]] = {}
        self.reports = 0

    def add(self, worker: str, delta: dict[str, Any]) -> None:
        """Merge one worker's delta (as produced by :meth:`Recorder.take_delta`)."""
        self.reports += 1
        for data in delta.get("requests", ()):
            series = RequestSeries.from_wire(data)
            _merge_into(self.requests, series, RequestSeries)
            _merge_into(self.interval_requests, series, RequestSeries)
        gauges = self.connected.setdefault(worker, {})
        for data in delta.get("streams", ()):
            series = StreamSeries.from_wire(data)
            gauges[series.key] = series.connected
            _merge_stream(self.streams, series)
            _merge_stream(self.interval_streams, series)
        if "health" in delta:
            self.health[worker] = delta["health"]

    def forget_worker(self, worker: str) -> None:
        """A worker is gone: its open streams no longer count; its counts stay in the totals."""
        self.connected.pop(worker, None)
        self.health.pop(worker, None)

    def connected_now(self, key: SeriesKey) -> int:
        return sum(gauges.get(key, 0) for gauges in self.connected.values())

    def take_interval(self) -> tuple[dict[SeriesKey, RequestSeries], dict[SeriesKey, StreamSeries]]:
        """The figures merged since the last call (for one sink write); starts a new interval."""
        requests, streams = self.interval_requests, self.interval_streams
        self.interval_requests, self.interval_streams = {}, {}
        for key, series in streams.items():
            series.connected = self.connected_now(key)
        return requests, streams


def _merge_into(target: dict, series: RequestSeries, kind: type[RequestSeries]) -> None:
    existing = target.get(series.key)
    if existing is None:
        target[series.key] = kind.from_wire(series.to_wire())
    else:
        existing.merge(series)


def _merge_stream(target: dict[SeriesKey, StreamSeries], series: StreamSeries) -> None:
    existing = target.get(series.key)
    if existing is None:
        copy = StreamSeries.from_wire(series.to_wire())
        copy.connected = 0
        target[series.key] = copy
    else:
        existing.merge(series, gauges=False)
