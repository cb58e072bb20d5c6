"""A worker's own health, sampled once per report: is the generator the bottleneck?

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

from .recorder import recorder

__all__ = ["health_sample"]

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


def health_sample() -> dict[str, Any]:
    """This process's health now.

    ``cpu_percent``: CPU use since the previous sample, in percent of one core (100 means one
    core was saturated; a gevent worker cannot use more). ``rss_bytes``: resident memory.
    ``greenlets``: approximate, see the module docstring. ``connections``: streams this
    process holds open (the sum of its recorder's ``connected`` gauges).
    """
    process = _this_process()
    return {
        "cpu_percent": float(process.cpu_percent(None)),
        "rss_bytes": int(process.memory_info().rss),
        "greenlets": _loop_watchers(),
        "connections": recorder().connections(),
    }
