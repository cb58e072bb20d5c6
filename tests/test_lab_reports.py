"""``wirelab up``: every test started from the web UI gets its own run directory and report.

The local lab for real: ``wirelab up`` starts the lab's own REST target, a Locust master
with its web UI and two worker processes in Locust's distributed mode, on loopback. The test
is a person at the UI (its HTTP API): it starts one test with a run time and lets it end,
then starts a second one and presses Stop. Each must leave a directory of its own with the
files ``wirelab run`` writes, its thresholds judged, while the UI stays up; the second's
figures must be its own, which Locust's statistics (cleared at every start) confirm.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import httpx
import pytest

from wirelab.metrics.results import load_results
from wirelab.processes import ManagedProcess, free_port

pytestmark = pytest.mark.timeout(300)

RUN_FILES = {"metrics.json", "timeseries.lp", "summary.json", "junit.xml", "report.html"}
#: One passes, one cannot: the verdict is the thresholds', judged for each test.
THRESHOLDS = ["rest:error_rate<50%", "rest:p50<1us"]


def _stats(base: str) -> dict:
    return httpx.get(f"{base}/stats/requests", timeout=5).json()


def _locust_counts(base: str) -> dict[str, int]:
    """Locust's own count per request name (it clears them when a test starts)."""
    return {
        row["name"]: row["num_requests"]
        for row in _stats(base)["stats"]
        if row["name"] != "Aggregated" and row["method"] == "rest"
    }


def _reported(reports: Path) -> list[Path]:
    """The tests whose report is written (summary.json is written last)."""
    return sorted(
        (test for test in reports.glob("*/*/") if (test / "summary.json").is_file()),
        key=lambda test: int(test.name.rpartition("-")[2]),
    )


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _wirelab_up(tmp_path: Path, workers: int) -> tuple[ManagedProcess, str, Path]:
    """``wirelab up`` on the lab's own REST target, with :data:`THRESHOLDS`; the process,
    its UI's base URL and the report dir."""
    port = free_port()
    reports = tmp_path / "reports"
    thresholds = [arg for expression in THRESHOLDS for arg in ("--threshold", expression)]
    argv = [
        sys.executable, "-m", "wirelab", "up", "--scenario", "smoke", "--protocols", "rest",
        "--workers", str(workers), *thresholds, "--web-port", str(port),
        "--report-dir", str(reports),
    ]  # fmt: skip
    up = ManagedProcess(argv, name="wirelab-up", log_path=tmp_path / "up.log").start()
    return up, f"http://127.0.0.1:{port}", reports


def _ready(up: ManagedProcess, base: str, workers: int) -> None:
    up.wait_ready(lambda: httpx.get(f"{base}/", timeout=1).status_code == 200, 90)
    up.wait_ready(lambda: len(_stats(base)["workers"]) == workers, 60)


def _running(base: str) -> None:
    """The test started runs and has requests. (Stopped any sooner, Locust 2.47 may tell a
    worker whose spawning_complete arrives after the stop to quit.)"""
    _wait(lambda: _stats(base)["state"] == "running", 60, "the test's users")
    _wait(lambda: sum(_locust_counts(base).values()) > 0, 60, "the test's requests")


def test_two_tests_started_from_the_web_ui_get_two_run_directories_with_their_own_reports(
    tmp_path: Path,
) -> None:
    up, base, reports = _wirelab_up(tmp_path, workers=2)
    locust_counts: list[dict[str, int]] = []
    try:
        _ready(up, base, workers=2)

        # The first test ends by its run time.
        answer = httpx.post(
            f"{base}/swarm", data={"user_count": 2, "spawn_rate": 2, "run_time": "4s"}, timeout=5
        )
        assert answer.json()["success"], answer.text
        _wait(lambda: len(_reported(reports)) == 1, 90, "the first test's report")
        locust_counts.append(_locust_counts(base))
        assert _stats(base)["state"] == "stopped"

        # The UI is still up: the second test ends with the Stop button.
        up.wait_ready(lambda: len(_stats(base)["workers"]) == 2, 60)
        answer = httpx.post(f"{base}/swarm", data={"user_count": 2, "spawn_rate": 2}, timeout=5)
        assert answer.json()["success"], answer.text
        _running(base)
        assert httpx.post(f"{base}/stop", timeout=5).json()["success"]
        _wait(lambda: len(_reported(reports)) == 2, 90, "the second test's report")
        locust_counts.append(_locust_counts(base))
        listed = httpx.get(f"{base}/wirelab/live.json", timeout=5).json()["reports"]
        served = [httpx.get(f"{base}/wirelab/{row['href']}", timeout=5) for row in listed]
        refused = [
            httpx.get(f"{base}/wirelab/reports/{listed[0]['run_id']}/metrics.json", timeout=5),
            httpx.get(f"{base}/wirelab/reports/..%2F..%2Flogs/master.log", timeout=5),
        ]
    finally:
        up.stop(grace=30)

    tests = _reported(reports)
    (lab_dir,) = {test.parent for test in tests}
    assert not (lab_dir / "metrics.json").exists()  # no run for the lab's whole life
    summaries = []
    for number, (test, counts) in enumerate(zip(tests, locust_counts, strict=True), 1):
        assert re.fullmatch(rf"smoke-\d{{8}}-\d{{6}}-{number}", test.name), test.name
        assert {path.name for path in test.iterdir()} >= RUN_FILES, test
        summary = json.loads((test / "summary.json").read_text())
        metrics = json.loads((test / "metrics.json").read_text())
        assert summary["run_id"] == metrics["run_id"] == test.name
        assert len(metrics["workers"]["seen"]) == 2
        # Its own figures: exactly what Locust counted for this test alone.
        recorded = {row["name"]: row["count"] for row in summary["requests"]}
        assert recorded == {name: count for name, count in counts.items() if count}, test
        assert sum(recorded.values()) > 0
        # The thresholds judged, and the verdict and exit code recorded.
        judged = {row["expression"]: row["passed"] for row in summary["thresholds"]}
        assert judged["rest:error_rate<50%"] is True and judged["rest:p50<1us"] is False
        assert (summary["exit_code"], summary["verdict"], summary["passed"]) == (1, "FAILED", False)
        assert "<testsuite" in (test / "junit.xml").read_text()
        points = load_results(test).points
        assert points and {point.tags.get("run_id") for point in points} == {test.name}
        summaries.append(summary)
    first, second = summaries
    assert first["run_id"] != second["run_id"]
    # The live view lists them, newest first, and serves their reports (nothing else).
    assert [(row["run_id"], row["verdict"]) for row in listed] == [
        (second["run_id"], "FAILED"),
        (first["run_id"], "FAILED"),
    ]
    assert [response.status_code for response in served] == [200, 200]
    assert served[0].text == (tests[1] / "report.html").read_text()
    assert "sandbox" in served[0].headers["content-security-policy"]
    assert [response.status_code for response in refused] == [404, 404]
    # One line per finished test in the terminal of `wirelab up`, with verdict and report.
    log = (tmp_path / "up.log").read_text()
    for test in tests:
        assert f"wirelab: test {test.name} FAILED (exit 1): {test / 'report.html'}" in log, log[
            -3000:
        ]


def test_the_test_running_when_the_lab_stops_is_written_and_reported(tmp_path: Path) -> None:
    """Ctrl-C (SIGTERM here) while a test runs: the master writes it as it quits and
    ``wirelab up`` reports it before it exits."""
    up, base, reports = _wirelab_up(tmp_path, workers=1)
    try:
        _ready(up, base, workers=1)
        answer = httpx.post(f"{base}/swarm", data={"user_count": 2, "spawn_rate": 2}, timeout=5)
        assert answer.json()["success"], answer.text
        _running(base)
    finally:
        code = up.stop(grace=30)
    assert code == 0, up.log_tail()
    (test,) = _reported(reports)
    assert {path.name for path in test.iterdir()} >= RUN_FILES, test
    summary = json.loads((test / "summary.json").read_text())
    assert sum(row["count"] for row in summary["requests"]) > 0
    assert {row["expression"] for row in summary["thresholds"]} >= set(THRESHOLDS)
    assert summary["incomplete"] == [] and summary["exit_code"] == 1
    log = (tmp_path / "up.log").read_text()
    assert f"wirelab: test {test.name} FAILED (exit 1): {test / 'report.html'}" in log, log[-3000:]
