"""When a test stopped from the web UI is over: every worker's last report is in.

A test of lab mode (:mod:`wirelab.metrics.per_test`) is written once the figures its
workers recorded until their users stopped have all reached the master;
:func:`wait_for_final_reports` finds that moment in Locust's own worker states.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent
import locust.runners

__all__ = ["FINAL_REPORT_MARGIN_S", "final_report_timeout", "wait_for_final_reports"]

#: Beyond the workers' stop timeout and a few report intervals: how much longer a stopped
#: test waits for its last worker reports before it is written with what it has.
FINAL_REPORT_MARGIN_S = 10.0


def final_report_timeout(stop_timeout: float | None, interval: float) -> float:
    """How long to wait for the last reports: a worker sleeps its stop timeout after its
    users stopped before it says it is ready again, then reports within an interval."""
    return (stop_timeout or 0.0) + 3 * interval + FINAL_REPORT_MARGIN_S


def wait_for_final_reports(
    runner: Any,
    workers: set[str],
    reports_from: Mapping[str, int],
    *,
    timeout: float,
    poll_s: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Block this greenlet until every worker in ``workers`` has sent its last report of
    the test that just stopped; returns the workers still owed one at ``timeout``.

    A Locust worker told to stop stops its users, says ``client_stopped`` (the master
    drops it from its clients), sleeps its stop timeout and says ``client_ready`` (back
    in the clients, state ``ready``). Its reports travel on the same ordered connection
    as those messages, so any report the master merges after it saw the worker ready was
    taken after its users had stopped: it holds the test's last figures. A worker that
    quits once ready sent its final report before it said so; workers Locust marked
    missing send nothing more. Neither is waited for. ``reports_from`` counts the reports
    merged per worker so far (read live).
    """
    ready_at: dict[str, int] = {}
    deadline = clock() + timeout
    while True:
        nodes = {node.id: node for node in runner.clients.all}
        owed = []
        for worker in sorted(workers):
            node = nodes.get(worker)
            gone = node is None and worker in ready_at  # quit after it was ready
            if gone or (node is not None and node.state == locust.runners.STATE_MISSING):
                continue
            if worker not in ready_at:
                if node is not None and node.state == locust.runners.STATE_INIT:
                    ready_at[worker] = reports_from.get(worker, 0)
                owed.append(worker)
            elif reports_from.get(worker, 0) <= ready_at[worker]:
                owed.append(worker)
        if not owed or clock() >= deadline:
            return owed
        gevent.sleep(poll_s)
