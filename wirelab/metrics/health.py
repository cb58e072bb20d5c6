"""A worker's own health, sampled once per report: is the generator the bottleneck?

Each report carries a sample (CPU, memory, greenlets, connections and the interval's
loop-lag percentiles) and the interval's loop-lag and host-lag histograms themselves, which
the master merges exactly (:mod:`wirelab.metrics.generator` judges them).

``greenlets`` is an approximation, on purpose. gevent keeps no registry of greenlets, and
counting them through ``gc.get_objects()`` walks every object in the process (tens of ms
in a loaded worker, every second). Instead it reports the gevent loop's active watcher
count: every greenlet that is waiting — on a timer (``sleep``), a socket or a
timeout — holds one watcher, so the figure tracks waiting users and connections. It misses
greenlets parked on an ``Event`` or a queue without a timeout and counts a few internal
watchers; read it as "things waiting on the loop", a trend rather than an exact count.
"""

from __future__ import annotations

from typing import Any

import gevent
import psutil

from .histogram import LogHistogram
from .looplag import LoopLag, loop_lag
from .recorder import recorder

__all__ = ["health_report", "health_sample"]

_process: psutil.Process | None = None


def _this_process() -> psutil.Process:
    global _process  # noqa: PLW0603 - one psutil handle per process keeps cpu_percent's state
    if _process is None:
        _process = psutil.Process()
        _process.cpu_percent(None)  # the first call only starts the measurement
    return _process


def _loop_watchers() -> int:
    try:
        return int(gevent.get_hub().loop.activecnt)
    except Exception:  # an unusual loop implementation: say 0 rather than fail a report
        return 0


def _ms(value_us: float | None) -> float | None:
    return None if value_us is None else round(value_us / 1000, 3)


def _percentiles(histogram: LogHistogram | None) -> tuple[float | None, ...]:
    if not histogram:
        return None, None, None
    values = histogram.quantiles([0.5, 0.99])
    return _ms(values[0.5]), _ms(values[0.99]), _ms(histogram.max)


def health_sample(lag: LoopLag | None = None) -> dict[str, Any]:
    """This process's health now.

    ``cpu_percent``: CPU use since the previous sample, in percent of one core (100 means one
    core was saturated; the gevent loop cannot use more, though grpc's own threads can add
    to it). ``rss_bytes``: resident memory. ``greenlets``: approximate, see the module
    docstring. ``connections``: streams this process holds open (the sum of its recorder's
    ``connected`` gauges). ``loop_lag_p50_ms``, ``loop_lag_p99_ms``, ``loop_lag_max_ms``
    and ``host_lag_p99_ms``, ``host_lag_max_ms``: of ``lag``, the interval's samples of
    :mod:`wirelab.metrics.looplag` (``None`` without samples).
    """
    process = _this_process()
    loop_p50, loop_p99, loop_max = _percentiles(lag.loop if lag else None)
    _, host_p99, host_max = _percentiles(lag.host if lag else None)
    return {
        "cpu_percent": float(process.cpu_percent(None)),
        "rss_bytes": int(process.memory_info().rss),
        "greenlets": _loop_watchers(),
        "connections": recorder().connections(),
        "loop_lag_p50_ms": loop_p50,
        "loop_lag_p99_ms": loop_p99,
        "loop_lag_max_ms": loop_max,
        "host_lag_p99_ms": host_p99,
        "host_lag_max_ms": host_max,
    }


def health_report() -> dict[str, Any]:
    """The health part of a worker report: ``health`` (:func:`health_sample` of the
    interval), and ``loop_lag`` and ``host_lag``, the interval's histograms in wire form
    (taken from this process's monitor, which starts over)."""
    lag = loop_lag().take()
    return {
        "health": health_sample(lag),
        "loop_lag": lag.loop.to_wire(),
        "host_lag": lag.host.to_wire(),
    }
