"""``wirelab influx push RUN_DIR --url …``: load a finished run's points into an InfluxDB.

A run without a live InfluxDB still keeps every point in ``RUN_DIR/timeseries.lp`` (the
embedded sink); this sends them later, with their original timestamps, through the same
transports (and so the same URL forms and credential variables) as the live sinks.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .exitcodes import EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE
from .metrics.results import TIMESERIES_FILE
from .metrics.sinks import RejectedError, TransientError, open_transport, parse_sink_url

__all__ = ["push_run"]

logger = logging.getLogger("wirelab.influx_push")

DEFAULT_BATCH_POINTS = 5_000
# A server that is briefly busy gets a few chances; one that is down fails the push fast.
_ATTEMPTS = 4
_BACKOFF_S = 0.5


def push_run(
    run_dir: Path | str,
    url: str,
    *,
    batch_points: int = DEFAULT_BATCH_POINTS,
    env: Mapping[str, str] | None = None,
) -> int:
    """Send every point of ``run_dir/timeseries.lp`` to the InfluxDB at ``url``.

    ``url`` is any InfluxDB sink URL (``influxdb://host:8086/db``, ``http://host:8086?db=db``,
    ``influxdb2://host:8086?org=o&bucket=b``); credentials come from the environment as for
    the live sinks. Progress and errors go to stderr as one line each.

    Returns:
        0 every point was stored; 2 bad URL or run dir, or the server refused the
        credentials or does not know the database/bucket; 3 the server was unreachable or
        rejected points.
    """
    path = Path(run_dir) / TIMESERIES_FILE
    try:
        if not path.is_file():
            raise ValueError(f"{run_dir} is not a finished run directory (no {TIMESERIES_FILE})")
        spec = parse_sink_url(url, env)
        if spec.kind == "file":
            raise ValueError("push needs an InfluxDB URL, not file://")
    except ValueError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    transport = open_transport(spec, env)
    totals = {"written": 0, "rejected": 0}
    try:
        for batch in _batches(path, batch_points):
            code = _send(transport, spec.name, batch, totals)
            if code != EXIT_OK:
                return code
    except ValueError as exc:  # not UTF-8: not a file the plugin wrote
        _say(f"error: {path}: {exc}")
        return EXIT_USAGE
    finally:
        transport.close()
    _say(f"pushed {totals['written']} points from {path} to {spec.name}")
    if totals["rejected"]:
        _say(f"error: {totals['rejected']} points were rejected")
        return EXIT_INCOMPLETE
    return EXIT_OK


def _send(transport: Any, name: str, batch: list[str], totals: dict[str, int]) -> int:
    """Send one batch with a few retries; an exit code other than 0 ends the push."""
    body = ("\n".join(batch) + "\n").encode()
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            transport.send(body, len(batch))
        except TransientError as exc:
            if attempt == _ATTEMPTS:
                stored = totals["written"]
                _say(f"error: {name} unreachable after {stored} points were stored: {exc}")
                return EXIT_INCOMPLETE
            time.sleep(_BACKOFF_S * 2 ** (attempt - 1))
            continue
        except RejectedError as exc:
            if exc.status in (401, 403, 404):
                _say(f"error: {name} refused the push (HTTP {exc.status}): {exc}")
                return EXIT_USAGE
            totals["rejected"] += exc.dropped
            totals["written"] += len(batch) - exc.dropped
            _say(f"warning: {name} rejected {exc.dropped} points: {exc}")
        else:
            totals["written"] += len(batch)
        return EXIT_OK
    return EXIT_OK


def _batches(path: Path, size: int) -> Iterator[list[str]]:
    """Lines of the file in batches; the embedded sink writes one point per line."""
    batch: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for raw in lines:
            line = raw.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            batch.append(line)
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


def _say(message: str) -> None:
    sys.stderr.write(f"wirelab influx push: {message}\n")
    sys.stderr.flush()
