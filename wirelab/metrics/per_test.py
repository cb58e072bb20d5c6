"""One run per test in a master with a web UI (lab mode): its identity and its directory.

``wirelab up`` and the chart's lab mode (``wirelab cluster ui``) keep one Locust master up
while people start and stop tests from its web UI. Each test is a run of its own: the
plugin (:mod:`wirelab.metrics.plugin`) opens a fresh
:class:`~wirelab.metrics.plugin.RunMetrics` when the test starts, with the settings of
:func:`per_test_config` (its own run id and directory inside the lab's report directory),
and finishes it when the workers' last reports are in (:mod:`wirelab.metrics.final_reports`),
so one test's figures never reach the next one's. The wirelab process that started the
master builds each finished run's report (:mod:`wirelab.report.lab`); the live view lists
them (:mod:`wirelab.webview.reports`). Nothing here imports Locust: the wirelab process
reads these names too, unpatched by gevent.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the plugin imports this module
    from .plugin import PluginConfig

__all__ = ["order_of_test", "per_test_config", "per_test_run_id"]


def per_test_run_id(scenario: str, number: int, started_at: float) -> str:
    """``<scenario>-<UTC start, to the second>-<n>``: ``n`` counts the lab's tests from 1,
    so two tests started within one second still get two directories."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started_at))
    return f"{scenario or 'test'}-{stamp}-{number}"


def order_of_test(test_dir: Path) -> tuple[int, str]:
    """A test directory's place in its lab, for sorting: the ``<n>`` its run id ends with
    (0 for a directory of another name), then the name."""
    number = test_dir.name.rpartition("-")[2]
    return (int(number), test_dir.name) if number.isdigit() else (0, test_dir.name)


def per_test_config(lab: PluginConfig, number: int, started_at: float) -> PluginConfig:
    """The settings of the lab's ``number``-th test: its own run id (the tag of its points)
    and, when the lab writes locally, its own directory inside the lab's."""
    run_id = per_test_run_id(lab.scenario, number, started_at)
    report_dir = lab.report_dir / run_id if lab.report_dir is not None else None
    return dataclasses.replace(lab, run_id=run_id, report_dir=report_dir)
