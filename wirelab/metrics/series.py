"""The two kinds of series wirelab measures: request/response, and streams of events.

A series is identified by ``(protocol, name)``, e.g. ``("ws", "ws echo")`` or
``("sse", "sse deliver")``. Both kinds hold counters that add and histograms that merge,
so a worker can ship the delta since its last report and the master can add it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .histogram import LogHistogram

#: Distinct error kinds kept per series; more are folded into "other" (bounded memory,
#: and error texts never become unbounded keys anywhere downstream).
MAX_ERROR_KINDS = 20

SeriesKey = tuple[str, str]


@dataclass(slots=True)
class RequestSeries:
    """Request/response figures of one name.

    ``latency`` is what a user of the system experiences: for open-model (arrival-rate)
    runs it is measured from the *intended* start, which corrects coordinated omission.
    ``service`` is measured from the actual send — the closed-model view — and is only
    kept for open-model runs, to be shown beside ``latency``.
    """

    protocol: str
    name: str
    count: int = 0
    failures: int = 0
    bytes: int = 0
    #: Open model: starts the generator could not make on time (k6's dropped_iterations).
    dropped: int = 0
    #: Requests sent a second time because the server went away before replying (a drain);
    #: each counts once in ``count``, its latency from the first send.
    retried: int = 0
    latency: LogHistogram = field(default_factory=LogHistogram)
    service: LogHistogram = field(default_factory=LogHistogram)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> SeriesKey:
        return (self.protocol, self.name)

    def record(
        self,
        latency_us: float,
        *,
        ok: bool = True,
        size: int = 0,
        service_us: float | None = None,
        error: str | None = None,
        retried: bool = False,
    ) -> None:
        self.count += 1
        self.bytes += size
        self.retried += retried
        self.latency.record(latency_us)
        if service_us is not None:
            self.service.record(service_us)
        if not ok:
            self.failures += 1
            kind = error or "error"
            if kind not in self.errors and len(self.errors) >= MAX_ERROR_KINDS:
                kind = "other"
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def merge(self, other: RequestSeries) -> None:
        self.count += other.count
        self.failures += other.failures
        self.bytes += other.bytes
        self.dropped += other.dropped
        self.retried += other.retried
        self.latency.merge(other.latency)
        self.service.merge(other.service)
        for kind, count in other.errors.items():
            key = kind if kind in self.errors or len(self.errors) < MAX_ERROR_KINDS else "other"
            self.errors[key] = self.errors.get(key, 0) + count

    def to_wire(self) -> dict[str, Any]:
        return {
            "p": self.protocol,
            "n": self.name,
            "count": self.count,
            "failures": self.failures,
            "bytes": self.bytes,
            "dropped": self.dropped,
            "retried": self.retried,
            "lat": self.latency.to_wire(),
            "svc": self.service.to_wire() if self.service else None,
            "errors": dict(self.errors),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> RequestSeries:
        return cls(
            protocol=data["p"],
            name=data["n"],
            count=data["count"],
            failures=data["failures"],
            bytes=data["bytes"],
            dropped=data.get("dropped", 0),
            retried=data.get("retried", 0),
            latency=LogHistogram.from_wire(data["lat"]),
            service=LogHistogram.from_wire(data["svc"]) if data.get("svc") else LogHistogram(),
            errors=dict(data.get("errors") or {}),
        )


#: Counters of a stream series that add across workers and intervals.
STREAM_COUNTERS = (
    "delivered",
    "gaps",
    "missing",
    "duplicates",
    "out_of_order",
    "resets",
    "reset_lost",
    "connects",
    "disconnects",
    "reconnects",
    "connect_failures",
    "goaways",
    "empty_polls",
)


@dataclass(slots=True)
class StreamSeries:
    """Delivery figures of one stream name (SSE, WS feed, gRPC Subscribe, polling).

    ``lag`` is delivery lag (receive time − publish ``ts``), or freshness lag for polling;
    ``reconnect_time`` runs from a disconnect to the first event after resuming.
    ``connected`` is a gauge: the current number of open streams, not a delta.
    """

    protocol: str
    name: str
    delivered: int = 0
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    resets: int = 0
    reset_lost: int = 0
    connects: int = 0
    disconnects: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    goaways: int = 0
    #: Polling only: polls that returned nothing new (the "wasted requests" of polling).
    empty_polls: int = 0
    connected: int = 0
    lag: LogHistogram = field(default_factory=LogHistogram)
    reconnect_time: LogHistogram = field(default_factory=LogHistogram)

    @property
    def key(self) -> SeriesKey:
        return (self.protocol, self.name)

    def record_event(self, verdict: str, lag_us: float) -> None:
        """Count one arrival classified by :class:`wirelab.sequence.SequenceChecker`."""
        if verdict == "ok":
            self.delivered += 1
            self.lag.record(lag_us)
        elif verdict == "gap":
            self.delivered += 1
            self.gaps += 1
            self.lag.record(lag_us)
        elif verdict == "duplicate":
            self.duplicates += 1
        elif verdict == "out_of_order":
            self.out_of_order += 1

    def merge(self, other: StreamSeries, *, gauges: bool = True) -> None:
        for name in STREAM_COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if gauges:
            self.connected += other.connected
        self.lag.merge(other.lag)
        self.reconnect_time.merge(other.reconnect_time)

    def to_wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {"p": self.protocol, "n": self.name, "connected": self.connected}
        for name in STREAM_COUNTERS:
            data[name] = getattr(self, name)
        data["lag"] = self.lag.to_wire()
        data["rt"] = self.reconnect_time.to_wire()
        return data

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> StreamSeries:
        series = cls(protocol=data["p"], name=data["n"], connected=data.get("connected", 0))
        for name in STREAM_COUNTERS:
            setattr(series, name, data.get(name, 0))
        series.lag = LogHistogram.from_wire(data["lag"])
        series.reconnect_time = LogHistogram.from_wire(data["rt"])
        return series
