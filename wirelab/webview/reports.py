"""The finished tests of a lab, for the live view: their verdicts and their report files.

In lab mode every test started from the web UI gets a run directory inside the lab's
(``WIRELAB_REPORT_DIR``) and, once it stopped, its report (:mod:`wirelab.report.lab`).
:class:`FinishedTests` lists those whose ``summary.json`` is written, newest first, and
hands out only a report's own files (:data:`SERVED`) of a directory that is one of them,
so a request can never name a path of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..metrics.per_test import order_of_test
from ..metrics.results import JUNIT_FILE, REPORT_FILE, SUMMARY_FILE

__all__ = ["SERVED", "FinishedTests"]

#: The files of a finished test the view serves (under the web UI's login).
SERVED = (REPORT_FILE, SUMMARY_FILE, JUNIT_FILE)


class FinishedTests:
    """The finished tests under ``lab_dir`` (``None``: the master writes nothing locally)."""

    def __init__(self, lab_dir: Path | None) -> None:
        self.lab_dir = lab_dir
        #: summary.json read once per test: {name: (mtime_ns, row)}.
        self._rows: dict[str, tuple[int, dict[str, Any]]] = {}

    def listing(self) -> list[dict[str, Any]]:
        """One row per finished test, newest first: ``run_id``, ``verdict``,
        ``exit_code``, ``duration_s`` and ``href`` (its report, relative to the view)."""
        rows = []
        for test in self._tests():
            summary = test / SUMMARY_FILE
            try:
                mtime = summary.stat().st_mtime_ns
            except OSError:
                continue
            cached = self._rows.get(test.name)
            if cached is None or cached[0] != mtime:
                row = self._row(test, summary)
                if row is None:
                    continue
                cached = self._rows[test.name] = (mtime, row)
            rows.append(cached[1])
        return rows

    def file(self, run_id: str, name: str) -> Path | None:
        """The path of ``name`` of finished test ``run_id``, or ``None`` (not one of them,
        not a file the view serves, or not written)."""
        if name not in SERVED:
            return None
        for test in self._tests():
            if test.name == run_id:
                path = test / name
                return path if path.is_file() else None
        return None

    def _tests(self) -> list[Path]:
        if self.lab_dir is None or not self.lab_dir.is_dir():
            return []
        tests = [path for path in self.lab_dir.iterdir() if (path / SUMMARY_FILE).is_file()]
        return sorted(tests, key=order_of_test, reverse=True)

    @staticmethod
    def _row(test: Path, summary: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(summary.read_text())
        except (OSError, ValueError):  # being written: next time
            return None
        return {
            "run_id": test.name,
            "verdict": data.get("verdict"),
            "exit_code": data.get("exit_code"),
            "duration_s": data.get("duration_s"),
            "href": f"reports/{test.name}/{REPORT_FILE}",
        }
