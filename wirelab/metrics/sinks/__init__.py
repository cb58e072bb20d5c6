"""Where the master's points go, chosen by URL.

============================================  ================================================
URL                                           sink
============================================  ================================================
``file:///abs/path.lp``                       line protocol appended to a local file (the
                                              embedded default is ``REPORT_DIR/timeseries.lp``)
``influxdb://host:8086/DB?rp=RP``             InfluxDB 1.x ``/write`` over HTTP
``influxdb+https://host:8086/DB``             the same over HTTPS
``http(s)://host:8086[/prefix]?db=DB&rp=RP``  InfluxDB 1.x ``/write`` (``prefix`` for a proxy)
``influxdb2://host:8086?org=O&bucket=B``      InfluxDB 2.x/3.x ``/api/v2/write`` through
                                              influxdb-client (``influx2+https://`` or
                                              ``influxdb2+https://`` for HTTPS)
============================================  ================================================

Options for the network sinks, as query parameters: ``buffer`` (most points held while the
server is unreachable, default 100000 or ``WIRELAB_SINK_BUFFER``), ``batch`` (points per
request, default 5000), ``timeout`` (seconds per request, default 5).

Credentials never travel in a URL (it ends up in logs, process lists and reports): InfluxDB
1.x takes ``WIRELAB_INFLUX_USER``/``WIRELAB_INFLUX_PASSWORD``, InfluxDB 2.x
``WIRELAB_INFLUX_TOKEN``; a URL carrying a password, token or ``u``/``p`` parameter is
refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from .buffer import (
    DEFAULT_BATCH_POINTS,
    DEFAULT_MAX_POINTS,
    BufferedSink,
    Outage,
    RejectedError,
    SinkStats,
    TransientError,
)
from .file import FileSink
from .influx_v1 import InfluxV1Transport

__all__ = [
    "BufferedSink",
    "FileSink",
    "Outage",
    "RejectedError",
    "Sink",
    "SinkSpec",
    "SinkStats",
    "TransientError",
    "open_sink",
    "open_transport",
    "parse_sink_url",
    "validate_sink_url",
]

DEFAULT_TIMEOUT_S = 5.0

_V1_SCHEMES = {"influxdb": "http", "influxdb+http": "http", "influxdb+https": "https"}
_V2_SCHEMES = {
    "influxdb2": "http",
    "influxdb2+http": "http",
    "influxdb2+https": "https",
    "influx2": "http",
    "influx2+http": "http",
    "influx2+https": "https",
}
_SECRET_PARAMS = {"u", "p", "user", "username", "password", "token", "auth"}
_OPTIONS = {"buffer", "batch", "timeout"}


class Sink(Protocol):
    """What the plugin needs of a sink. ``write`` must never block the gevent loop."""

    name: str
    url: str

    def write(self, lines: Sequence[str]) -> None: ...

    def flush(self, timeout: float) -> bool: ...

    def close(self, timeout: float) -> None: ...

    def stats(self) -> SinkStats: ...


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """A validated sink URL."""

    kind: str  # "file" | "influx_v1" | "influx_v2"
    url: str
    name: str
    path: Path | None = None
    base_url: str = ""
    database: str = ""
    retention_policy: str = ""
    org: str = ""
    bucket: str = ""
    max_points: int = DEFAULT_MAX_POINTS
    batch_points: int = DEFAULT_BATCH_POINTS
    timeout: float = DEFAULT_TIMEOUT_S


def parse_sink_url(url: str, env: Mapping[str, str] | None = None) -> SinkSpec:
    """Validate a sink URL (see the module docstring) without connecting to anything.

    Raises:
        ValueError: with a message fit for the user (unknown scheme, missing database,
            credentials in the URL, bad option).
    """
    env = os.environ if env is None else env
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        raw = parts.netloc + parts.path
        if not raw:
            raise ValueError(f"sink URL {url!r}: file:// needs a path, e.g. file:///tmp/run.lp")
        path = Path(raw).expanduser().resolve()
        return SinkSpec(kind="file", url=f"file://{path}", name=f"file {path.name}", path=path)

    if parts.password or parts.username:
        raise ValueError(
            f"sink URL for {parts.hostname}: credentials do not belong in a URL; set "
            "WIRELAB_INFLUX_USER/WIRELAB_INFLUX_PASSWORD (1.x) or WIRELAB_INFLUX_TOKEN (2.x)"
        )
    query = {
        key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()
    }
    secrets = _SECRET_PARAMS & {key.lower() for key in query}
    if secrets:
        raise ValueError(
            f"sink URL for {parts.hostname}: {'/'.join(sorted(secrets))} must not be in the URL; "
            "set WIRELAB_INFLUX_USER/WIRELAB_INFLUX_PASSWORD (1.x) or WIRELAB_INFLUX_TOKEN (2.x)"
        )
    if not parts.hostname:
        raise ValueError(f"sink URL {url!r} has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"sink URL {url!r}: bad port") from exc
    options = _options(url, query, env)

    if scheme in _V1_SCHEMES or scheme in ("http", "https"):
        if scheme in _V1_SCHEMES:
            http = _V1_SCHEMES[scheme]
            database = parts.path.strip("/")
            prefix = ""
            allowed = _OPTIONS | {"rp"}
        else:
            http = scheme
            database = query.get("db", "")
            prefix = parts.path.rstrip("/")
            allowed = _OPTIONS | {"rp", "db"}
        _reject_unknown(url, query, allowed)
        if not database or "/" in database:
            raise ValueError(
                f"sink URL {url!r}: name one database, e.g. influxdb://host:8086/wirelab "
                "or http://host:8086?db=wirelab"
            )
        host = f"{parts.hostname}:{port or 8086}"
        return SinkSpec(
            kind="influx_v1",
            url=url,
            name=f"influxdb {host}/{database}",
            base_url=f"{http}://{host}{prefix}",
            database=database,
            retention_policy=query.get("rp", ""),
            **options,
        )

    if scheme in _V2_SCHEMES:
        _reject_unknown(url, query, _OPTIONS | {"org", "bucket"})
        org, bucket = query.get("org", ""), query.get("bucket", "")
        if not org or not bucket:
            raise ValueError(
                f"sink URL {url!r}: InfluxDB 2 needs org and bucket, "
                "e.g. influxdb2://host:8086?org=lab&bucket=wirelab"
            )
        host = f"{parts.hostname}:{port or 8086}"
        return SinkSpec(
            kind="influx_v2",
            url=url,
            name=f"influxdb2 {host}/{bucket}",
            base_url=f"{_V2_SCHEMES[scheme]}://{host}{parts.path.rstrip('/')}",
            org=org,
            bucket=bucket,
            **options,
        )

    raise ValueError(
        f"sink URL {url!r}: unknown scheme {parts.scheme!r}; use file://, influxdb://, "
        "http(s)://…?db=, or influxdb2://"
    )


def validate_sink_url(url: str, env: Mapping[str, str] | None = None) -> None:
    """Check a sink URL as :func:`parse_sink_url` does, for the CLI's early usage errors.

    Raises:
        ValueError: the URL is invalid (the message says why, without the URL's secrets).
    """
    parse_sink_url(url, env)


def _options(url: str, query: Mapping[str, str], env: Mapping[str, str]) -> dict[str, Any]:
    try:
        max_points = int(
            query.get("buffer") or env.get("WIRELAB_SINK_BUFFER") or DEFAULT_MAX_POINTS
        )
        batch_points = int(query.get("batch") or DEFAULT_BATCH_POINTS)
        timeout = float(query.get("timeout") or DEFAULT_TIMEOUT_S)
    except ValueError as exc:
        raise ValueError(f"sink URL {url!r}: buffer, batch and timeout must be numbers") from exc
    if max_points < 1 or batch_points < 1 or timeout <= 0:
        raise ValueError(f"sink URL {url!r}: buffer, batch and timeout must be positive")
    return {"max_points": max_points, "batch_points": batch_points, "timeout": timeout}


def _reject_unknown(url: str, query: Mapping[str, str], allowed: set[str]) -> None:
    unknown = set(query) - allowed
    if unknown:
        raise ValueError(
            f"sink URL {url!r}: unknown option(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(allowed))})"
        )


def open_transport(spec: SinkSpec, env: Mapping[str, str] | None = None) -> Any:
    """The synchronous transport of a network sink (used by the buffer and by push)."""
    env = os.environ if env is None else env
    if spec.kind == "influx_v1":
        return InfluxV1Transport(
            spec.base_url,
            spec.database,
            retention_policy=spec.retention_policy,
            username=env.get("WIRELAB_INFLUX_USER") or None,
            password=env.get("WIRELAB_INFLUX_PASSWORD") or None,
            timeout=spec.timeout,
        )
    if spec.kind == "influx_v2":
        # influxdb-client is a heavy import; only a v2 sink pays for it.
        from .influx_v2 import InfluxV2Transport  # noqa: PLC0415

        return InfluxV2Transport(
            spec.base_url,
            org=spec.org,
            bucket=spec.bucket,
            token=env.get("WIRELAB_INFLUX_TOKEN") or None,
            timeout=spec.timeout,
        )
    raise ValueError(f"{spec.kind} sink has no network transport")


def open_sink(url_or_config: str | Mapping[str, Any], env: Mapping[str, str] | None = None) -> Sink:
    """Open the sink a URL names; a mapping may carry ``url`` plus ``buffer``/``batch``/
    ``timeout`` (the scenario's form). Network sinks start their writer greenlet.

    Raises:
        ValueError: the URL or an option is invalid.
    """
    if isinstance(url_or_config, str):
        spec = parse_sink_url(url_or_config, env)
    else:
        config = dict(url_or_config)
        try:
            spec = parse_sink_url(str(config.pop("url")), env)
        except KeyError as exc:
            raise ValueError("sink config needs a url") from exc
        overrides = {"buffer": "max_points", "batch": "batch_points", "timeout": "timeout"}
        unknown = set(config) - set(overrides)
        if unknown:
            raise ValueError(f"sink config: unknown key(s) {', '.join(sorted(unknown))}")
        values = {overrides[key]: value for key, value in config.items()}
        spec = replace(spec, **values)
    if spec.kind == "file":
        assert spec.path is not None
        return FileSink(spec.path)
    return BufferedSink(
        open_transport(spec, env),
        name=spec.name,
        url=spec.url,
        kind=spec.kind,
        max_points=int(spec.max_points),
        batch_points=int(spec.batch_points),
    )
