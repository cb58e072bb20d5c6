"""One run per test in a master with a web UI (lab mode): its identity, and when it is over.

``wirelab up`` and the chart's lab mode (``wirelab cluster ui``) keep one Locust master up
while people start and stop tests from its web UI. Each test is a run of its own: the
plugin (:mod:`wirelab.metrics.plugin`) opens a fresh
:class:`~wirelab.metrics.plugin.RunMetrics` when the test starts, in a directory of its own
inside the lab's report directory (:func:`per_test_config`), and finishes it when the workers'
last reports are in (:func:`wait_for_final_reports`), so one test's figures never reach the
next one's. The wirelab process that started the master builds each finished run's report
(:mod:`wirelab.report.lab`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import gevent
import locust.runners

if TYPE_CHECKING:  # the plugin imports this module
    from .plugin import PluginConfig

__all__ = [
    "FINAL_REPORT_MARGIN_S",
    "final_report_timeout",
    "per_test_config",
    "per_test_run_id",
    "wait_for_final_reports",
]

#: Beyond the workers' stop timeout and a few report intervals: how much longer a stopped
#: test waits for its last worker reports before it is written with what it has.
FINAL_REPORT_MARGIN_S = 10.0


def per_test_run_id(scenario: str, number: int, started_at: float) -> str:
    """``<scenario>-<UTC start, to the second>-<n>``: ``n`` counts the lab's tests from 1,
    so two tests started within one second still get two directories."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started_at))
    return f"{scenario or 'test'}-{stamp}-{number}"


def per_test_config(lab: PluginConfig, number: int, started_at: float) -> PluginConfig:
    """The settings of the lab's ``number``-th test: its own run id (the tag of its points)
    and, when the lab writes locally, its own directory inside the lab's."""
    run_id = per_test_run_id(lab.scenario, number, started_at)
    report_dir = lab.report_dir / run_id if lab.report_dir is not None else None
    return dataclasses.replace(lab, run_id=run_id, report_dir=report_dir)


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
