"""The one schema every sink writes, as InfluxDB line protocol.

The master writes one set of points per interval (default 1 s), all stamped with the
interval's end time in nanoseconds. The same lines go to every sink: the run's
``timeseries.lp`` (the embedded default), InfluxDB 1.x and InfluxDB 2.x/3.x.

Tags (low cardinality, never an exception text or a URL)
    ``run_id``, ``scenario`` on every point; ``protocol``, ``name`` on series points;
    ``worker`` on worker health; ``kind`` on annotations. Empty tags are left out.

Measurements
    ``requests`` — one point per ``(protocol, name)`` with requests in the interval.
        Fields: ``count``, ``failures``, ``bytes``, ``dropped`` (open-model starts missed),
        ``retried`` (sent again after the server went away before replying),
        ``p50``, ``p90``, ``p95``, ``p99``, ``p999``, ``max`` (latency, ms; from the intended
        start in open-model runs), and ``svc_p50``, ``svc_p99`` (ms from the actual send, the
        closed-model view) when the series has them. Percentile fields are absent in an
        interval with only dropped starts.
    ``streams`` — one point per stream ``(protocol, name)`` reported in the interval.
        Counters: ``delivered``, ``gaps``, ``missing``, ``duplicates``, ``out_of_order``,
        ``resets``, ``reset_lost``, ``connects``, ``disconnects``, ``reconnects``,
        ``connect_failures``, ``goaways``, ``empty_polls`` (polling); gauge ``connected``
        (open streams across all live workers); ``lag_p50``, ``lag_p90``, ``lag_p99``,
        ``lag_max`` (delivery lag, ms) and
        ``reconnect_p50``, ``reconnect_p99`` (disconnect to first event after resuming, ms)
        when there were samples.
    ``users`` — field ``users``: running users across all workers.
    ``worker_health`` — tag ``worker``; fields ``cpu_percent`` (of one core, since the
        previous sample), ``rss_bytes``, ``greenlets`` (approximate: active gevent loop
        watchers), ``connections`` (open streams held by the worker), and ``loop_lag_p50``,
        ``loop_lag_p99``, ``loop_lag_max`` (the interval's event-loop lag from the worker's
        own work, ms) and ``host_lag_p99`` (the lateness the machine added by not running
        it, ms), absent in an interval without users.
    ``annotations`` — tag ``kind`` (``deploy_start``, ``storm``, ``worker_lost``, ...);
        field ``text``; optional ``protocol``/``name``/``worker`` tags. ``kind`` is a tag
        only: the same key as tag and field is ambiguous in InfluxQL and a column clash in
        InfluxDB 3, and InfluxQL selects a tag as a column anyway
        (``SELECT "text", "kind" FROM "annotations"``).
    ``thresholds`` — written once when the run is judged: tags ``threshold`` (the
        expression) and ``name`` (the series or group it judged); fields ``passed`` (1/0),
        ``observed`` (absent when there was no data), ``limit``, ``detail``.
    ``targets`` — server-side figures per target replica (tags ``protocol``, ``replica``: a
        stable name such as ``ws-1``, kept across restarts), polled from each replica's admin
        ``/stats`` every interval during scenarios with replicas. Gauges
        ``active_connections`` (streams for gRPC), ``draining`` and ``ready`` (0/1); per
        interval ``accepted`` (connections accepted; gRPC: streams opened), ``accept_rate``
        (accepted per second of the interval), ``requests`` (requests, WS messages, gRPC
        calls), ``resumes`` and ``replayed`` (events re-sent from the log). While a replica is
        being replaced, its old and new process are summed under its one name.
    ``target_accepts`` — tags ``protocol``, ``replica``; field ``accepted``: connections
        accepted in one 100 ms bucket, stamped with the bucket's start. Written only for
        buckets with accepts; the shape of a reconnect storm, which 1 s points blur.
    ``sink`` — tag ``name`` (the sink, e.g. ``influxdb 10.0.0.5:8086/wirelab``); fields
        ``buffered`` (points waiting), ``dropped`` (points lost so far), ``retries``,
        ``written``.

Counters are per interval (sum them over time); gauges and percentiles are per interval
(percentiles of the whole run come from the merged histograms in ``metrics.json``, never
from averaging interval percentiles).

Encoding: integers carry the ``i`` suffix, floats always a decimal point or exponent, so a
field never changes type between points. In measurement names commas and spaces are
escaped; in tag keys, tag values and field keys commas, equals signs and spaces. String
fields escape ``"`` and ``\\``. InfluxDB cannot carry a newline in any value, nor a
backslash in a tag unambiguously: newlines become spaces and a backslash in a tag or key
becomes ``/``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .histogram import LogHistogram
from .series import STREAM_COUNTERS, RequestSeries, SeriesKey, StreamSeries

__all__ = [
    "TAG_KEYS",
    "Point",
    "annotation_point",
    "encode",
    "encode_many",
    "health_point",
    "parse",
    "parse_line",
    "request_point",
    "sink_point",
    "stream_point",
    "target_accepts_point",
    "targets_point",
    "threshold_point",
    "users_point",
]

#: The only tag keys any point carries.
TAG_KEYS = frozenset(
    {"run_id", "scenario", "protocol", "name", "worker", "kind", "replica", "threshold"}
)

FieldValue = int | float | str | bool

#: Latency quantiles of the ``requests`` measurement: field name -> quantile.
REQUEST_QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}


@dataclass(slots=True)
class Point:
    """One line of line protocol."""

    measurement: str
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FieldValue] = field(default_factory=dict)
    time_ns: int | None = None


# -- encoding ------------------------------------------------------------------------------

# One pass of str.translate: a newline becomes an (escaped) space.
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\ ", "\r": "\\ ", "\\": "/"})
_KEY_ESCAPES = str.maketrans(
    {",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\ ", "\r": "\\ ", "\\": "/"}
)


def _escape_key(text: str) -> str:
    return text.translate(_KEY_ESCAPES)


def _escape_string(text: str) -> str:
    return (
        '"'
        + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")
        + '"'
    )


def _encode_value(value: FieldValue) -> str | None:
    # bool before int: bool is an int subclass.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None  # line protocol has no NaN/Inf; leave the field out
        return repr(value)
    return _escape_string(str(value))


def encode(point: Point) -> str:
    """One point as a line of line protocol (no trailing newline).

    Raises:
        ValueError: the point has no field to write (line protocol requires one).
    """
    parts = [point.measurement.translate(_MEASUREMENT_ESCAPES)]
    for key in sorted(point.tags):  # sorted tags are what InfluxDB indexes fastest
        value = point.tags[key]
        if value:
            parts.append(f",{_escape_key(key)}={_escape_key(value)}")
    fields = []
    for key, value in point.fields.items():
        if value is None:
            continue
        encoded = _encode_value(value)
        if encoded is not None:
            fields.append(f"{_escape_key(key)}={encoded}")
    if not fields:
        raise ValueError(f"point {point.measurement!r} has no field to write")
    line = "".join(parts) + " " + ",".join(fields)
    if point.time_ns is not None:
        line += f" {point.time_ns}"
    return line


def encode_many(points: Iterable[Point]) -> list[str]:
    """Encode points, skipping any without fields."""
    lines = []
    for point in points:
        try:
            lines.append(encode(point))
        except ValueError:
            continue
    return lines


# -- parsing -------------------------------------------------------------------------------


def _scan(text: str, start: int, stops: str) -> tuple[str, int]:
    """Read from ``start`` up to an unescaped character of ``stops``; unescape on the way."""
    out = []
    i = start
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in ',= \\"':
            out.append(text[i + 1])
            i += 2
            continue
        if char in stops:
            break
        out.append(char)
        i += 1
    return "".join(out), i


def _parse_value(raw: str) -> FieldValue:
    if raw.endswith("i") or raw.endswith("u"):
        return int(raw[:-1])
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    return float(raw)


def parse_line(line: str) -> Point:
    """Parse one line of line protocol back into a :class:`Point`.

    Raises:
        ValueError: the line is not valid line protocol.
    """
    line = line.rstrip("\n")
    if not line or line.startswith("#"):
        raise ValueError("empty line or comment")
    measurement, i = _scan(line, 0, ", ")
    if not measurement:
        raise ValueError(f"no measurement in {line!r}")
    tags: dict[str, str] = {}
    while i < len(line) and line[i] == ",":
        key, i = _scan(line, i + 1, "=")
        if i >= len(line):
            raise ValueError(f"tag without value in {line!r}")
        value, i = _scan(line, i + 1, ", ")
        tags[key] = value
    if i >= len(line) or line[i] != " ":
        raise ValueError(f"no fields in {line!r}")
    fields, i = _parse_fields(line, i + 1)
    time_ns = None
    rest = line[i:].strip()
    if rest:
        time_ns = int(rest)
    return Point(measurement, tags, fields, time_ns)


def _parse_fields(line: str, i: int) -> tuple[dict[str, FieldValue], int]:
    fields: dict[str, FieldValue] = {}
    n = len(line)
    while True:
        key, i = _scan(line, i, "=")
        if i >= n:
            raise ValueError(f"field without value in {line!r}")
        i += 1
        if i < n and line[i] == '"':
            fields[key], i = _parse_string(line, i + 1)
        else:
            start = i
            while i < n and line[i] not in ", ":
                i += 1
            fields[key] = _parse_value(line[start:i])
        if i < n and line[i] == ",":
            i += 1
            continue
        return fields, i


def _parse_string(line: str, i: int) -> tuple[str, int]:
    """A string field's value from just after its opening quote; ends after the closing one."""
    chars = []
    n = len(line)
    while i < n and line[i] != '"':
        if line[i] == "\\" and i + 1 < n and line[i + 1] in '"\\':
            chars.append(line[i + 1])
            i += 2
            continue
        chars.append(line[i])
        i += 1
    if i >= n:
        raise ValueError(f"unterminated string in {line!r}")
    return "".join(chars), i + 1


def parse(lines: Iterable[str]) -> Iterator[Point]:
    """Parse lines (a file object works), skipping blank lines and ``#`` comments."""
    for line in lines:
        if line.strip() and not line.startswith("#"):
            yield parse_line(line)


# -- the schema ----------------------------------------------------------------------------


def _ms(value_us: float | None) -> float | None:
    return None if value_us is None else round(value_us / 1000.0, 4)


def _series_tags(base: Mapping[str, str], key: SeriesKey) -> dict[str, str]:
    return {**base, "protocol": key[0], "name": key[1]}


def request_point(series: RequestSeries, base_tags: Mapping[str, str], time_ns: int) -> Point:
    """The ``requests`` point of one series' figures for an interval."""
    fields: dict[str, Any] = {
        "count": series.count,
        "failures": series.failures,
        "bytes": series.bytes,
        "dropped": series.dropped,
        "retried": series.retried,
    }
    if series.latency:
        fields.update(_quantile_fields(series.latency, REQUEST_QUANTILES, ""))
        fields["max"] = _ms(series.latency.max)
    if series.service:
        fields.update(_quantile_fields(series.service, {"p50": 0.5, "p99": 0.99}, "svc_"))
    return Point("requests", _series_tags(base_tags, series.key), fields, time_ns)


def stream_point(series: StreamSeries, base_tags: Mapping[str, str], time_ns: int) -> Point:
    """The ``streams`` point of one stream series' figures for an interval."""
    fields: dict[str, Any] = {name: getattr(series, name) for name in STREAM_COUNTERS}
    fields["connected"] = series.connected
    if series.lag:
        fields.update(_quantile_fields(series.lag, {"p50": 0.5, "p90": 0.9, "p99": 0.99}, "lag_"))
        fields["lag_max"] = _ms(series.lag.max)
    if series.reconnect_time:
        fields.update(
            _quantile_fields(series.reconnect_time, {"p50": 0.5, "p99": 0.99}, "reconnect_")
        )
    return Point("streams", _series_tags(base_tags, series.key), fields, time_ns)


def _quantile_fields(
    histogram: LogHistogram, names: Mapping[str, float], prefix: str
) -> dict[str, float | None]:
    values = histogram.quantiles(list(names.values()))
    return {prefix + name: _ms(values[q]) for name, q in names.items()}


def users_point(users: int, base_tags: Mapping[str, str], time_ns: int) -> Point:
    """The ``users`` point: running users across all workers."""
    return Point("users", dict(base_tags), {"users": int(users)}, time_ns)


def health_point(
    worker: str, sample: Mapping[str, Any], base_tags: Mapping[str, str], time_ns: int
) -> Point:
    """A ``worker_health`` point from one :func:`wirelab.metrics.health.health_sample`."""
    fields: dict[str, Any] = {
        "cpu_percent": float(sample.get("cpu_percent", 0.0)),
        "rss_bytes": int(sample.get("rss_bytes", 0)),
        "greenlets": int(sample.get("greenlets", 0)),
        "connections": int(sample.get("connections", 0)),
    }
    for name in ("loop_lag_p50", "loop_lag_p99", "loop_lag_max", "host_lag_p99"):
        value = sample.get(f"{name}_ms")
        if value is not None:
            fields[name] = float(value)
    return Point("worker_health", {**base_tags, "worker": worker}, fields, time_ns)


def annotation_point(
    kind: str,
    text: str,
    base_tags: Mapping[str, str],
    time_ns: int,
    extra_tags: Mapping[str, str] | None = None,
) -> Point:
    """An ``annotations`` point: a scenario action or a run event on the timeline."""
    tags = {**base_tags, **(extra_tags or {}), "kind": kind}
    return Point("annotations", tags, {"text": text}, time_ns)


def sink_point(
    name: str, stats: Mapping[str, Any], base_tags: Mapping[str, str], time_ns: int
) -> Point:
    """A ``sink`` point: one sink's health (so the file sink records InfluxDB's outages)."""
    fields = {
        "buffered": int(stats.get("buffered", 0)),
        "dropped": int(stats.get("dropped", 0)),
        "retries": int(stats.get("retries", 0)),
        "written": int(stats.get("written", 0)),
    }
    return Point("sink", {**base_tags, "name": name}, fields, time_ns)


def threshold_point(
    expression: str,
    subject: str,
    *,
    passed: bool,
    observed: float | None,
    limit: float,
    detail: str,
    base_tags: Mapping[str, str],
    time_ns: int,
) -> Point:
    """A ``thresholds`` point: one verdict, stamped at the end of the run.

    Tags ``threshold`` (the expression) and ``name`` (the subject it judged): one expression
    such as ``*:p99<50ms`` gives a verdict per series, so both are needed to keep points
    with the same timestamp apart.
    """
    fields: dict[str, FieldValue] = {"passed": int(passed), "limit": float(limit), "detail": detail}
    if observed is not None:
        fields["observed"] = float(observed)
    tags = {**base_tags, "threshold": expression, "name": subject}
    return Point("thresholds", tags, fields, time_ns)


#: Fields of the ``targets`` measurement, in the order they are written.
TARGET_FIELDS = (
    "active_connections",
    "accepted",
    "accept_rate",
    "requests",
    "resumes",
    "replayed",
    "draining",
    "ready",
)


def targets_point(
    protocol: str,
    replica: str,
    figures: Mapping[str, float],
    base_tags: Mapping[str, str],
    time_ns: int,
) -> Point:
    """A ``targets`` point: one replica's server-side figures for one interval."""
    fields: dict[str, FieldValue] = {}
    for key in TARGET_FIELDS:
        value = figures.get(key, 0)
        fields[key] = float(value) if key == "accept_rate" else int(value)
    return Point(
        "targets", {**base_tags, "protocol": protocol, "replica": replica}, fields, time_ns
    )


def target_accepts_point(
    protocol: str, replica: str, accepted: int, base_tags: Mapping[str, str], time_ns: int
) -> Point:
    """A ``target_accepts`` point: accepts of one replica in the 100 ms from ``time_ns``."""
    tags = {**base_tags, "protocol": protocol, "replica": replica}
    return Point("target_accepts", tags, {"accepted": int(accepted)}, time_ns)
