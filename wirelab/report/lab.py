"""The report of every test a lab's web UI runs, built as soon as the master has written it.

In lab mode (``wirelab up``, the cluster ``ui`` role) the Locust master's metrics plugin
writes one run directory per test, inside the lab's own (see
:mod:`wirelab.metrics.per_test`); its ``metrics.json`` appears, whole, once the workers'
last reports of that test are in. :class:`LabReports` watches for those and writes each
test's ``summary.json``, ``junit.xml`` and ``report.html`` with :func:`~.build.write_report`,
the code ``wirelab run`` uses, judging the scenario's thresholds; it says one line per test.

Why the report is built here, in the wirelab process that started the master, and not in
the master itself:

* this process holds the plan the master was started from (scenario, overrides, thresholds,
  sinks) as the user gave it; the master only has the environment, and rebuilding a plan
  there would run the plan's checks (a user's locustfile imported in a child process, the
  capacity check) again inside Locust;
* judging a run and drawing its report is CPU work of up to seconds on a long test; in the
  master it would stall the gevent loop that serves the web UI, takes the workers'
  heartbeats and merges the reports of a test that may already have started again;
* a report that fails costs that test its report, never the master and its UI.

The price: the cluster ``ui`` role supervises Locust instead of replacing itself with it,
and forwards SIGTERM to it, as the headless ``master`` role already does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ..metrics.per_test import order_of_test
from ..metrics.results import METRICS_FILE, SUMMARY_FILE, TIMESERIES_FILE
from ..plan import RunPlan
from .build import WrittenReport, write_report

__all__ = ["LabReports"]

log = logging.getLogger(__name__)


class LabReports:
    """Builds the reports of the tests under ``plan.run_dir`` (the lab's directory).

    ``say`` prints one line per finished test (the terminal of ``wirelab up``, the pod's
    log). Call :meth:`poll` while the master runs and :meth:`close` once it has stopped.
    """

    def __init__(self, plan: RunPlan, *, say: Callable[[str], None] | None = None) -> None:
        self.plan = plan
        self.say = say or _print
        #: Every test handled, with its report (``None``: the report could not be written).
        self.reports: dict[str, WrittenReport | None] = {}

    def poll(self) -> list[WrittenReport]:
        """Write the report of every test the master finished since the last call."""
        return self._build(lambda test: (test / METRICS_FILE).is_file())

    def close(self) -> list[WrittenReport]:
        """After the master stopped: also report the tests it never finished writing (a
        master killed mid-test leaves only their time series); those are incomplete."""
        return self._build(
            lambda test: (test / METRICS_FILE).is_file() or (test / TIMESERIES_FILE).is_file()
        )

    def _build(self, written: Callable[[Path], bool]) -> list[WrittenReport]:
        if not self.plan.run_dir.is_dir():
            return []
        built = []
        for test in sorted(self.plan.run_dir.iterdir(), key=order_of_test):
            if test.name in self.reports or not test.is_dir() or not written(test):
                continue
            if (test / SUMMARY_FILE).is_file():  # reported before (a restarted supervisor)
                self.reports[test.name] = None
                continue
            report = self._report(test)
            if report is not None:
                built.append(report)
        return built

    def _report(self, test: Path) -> WrittenReport | None:
        try:
            report = write_report(self.plan.for_test(test.name), incomplete=[])
        except Exception as exc:  # the lab stays up for the next test
            log.exception("test %s: report failed", test.name)
            self.say(f"wirelab: test {test.name}: no report ({type(exc).__name__}: {exc})")
            self.reports[test.name] = None
            return None
        self.reports[test.name] = report
        self.say(
            f"wirelab: test {test.name} {report.summary['verdict']} "
            f"(exit {report.code}): {report.html}"
        )
        return report


def _print(line: str) -> None:
    print(line, flush=True)  # a terminal, or a log file read while the lab runs
