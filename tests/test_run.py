"""``wirelab run``: real distributed runs (a Locust master + worker processes over ZeroMQ)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx
import psutil
import pytest

from tests.own_locustfile import OWN_LOCUSTFILE, write_own_locustfile
from wirelab.processes import ManagedProcess, free_port

PROTOCOLS = ["rest", "sse", "ws", "grpc"]


def wirelab_run(*args: str, report_dir: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wirelab", "run", "--report-dir", str(report_dir), *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
    )


def url_args(running) -> list[str]:
    """Point the run at targets this test started (so it can read their counters)."""
    args = []
    for protocol in running.ports:
        base = running.url(protocol)
        args += [f"--{protocol}-url", base]
    return args


def only_run_dir(report_dir: Path) -> Path:
    (run_dir,) = [path for path in report_dir.iterdir() if path.is_dir()]
    return run_dir


def target_stats(running, protocol: str) -> dict:
    with urllib.request.urlopen(running.url(protocol, "/stats"), timeout=5) as response:
        return json.loads(response.read())


def test_distributed_smoke_run_passes_and_matches_what_the_targets_served(
    targets, tmp_path
) -> None:
    running = targets.start(PROTOCOLS, args=["--rate", "20"])
    result = wirelab_run(
        "--scenario", "smoke", "--duration", "8s", "--workers", "2", *url_args(running),
        report_dir=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["passed"] is True
    assert len(summary["workers"]["seen"]) == 2
    requests = {row["name"]: row for row in summary["requests"]}
    protocols = {row["protocol"] for row in summary["requests"]}
    assert {"rest", "poll", "ws", "grpc"} <= protocols
    streams = {row["name"]: row for row in summary["streams"]}
    for name in ("sse deliver", "ws deliver", "grpc deliver", "poll short", "poll long"):
        assert streams[name]["delivered"] > 0, name
        assert streams[name]["missing"] == streams[name]["duplicates"] == 0, name

    # The generator's counts against the target's own: users are stopped mid-request at
    # the end, so a request the target served may not have been recorded (at most one per
    # user and route), never the other way round.
    served = target_stats(running, "rest")["requests"]
    users = 10  # the smoke scenario's users: an upper bound on requests cut off at the end
    for route in ("POST /items", "GET /items/{id}", "PUT /items/{id}", "DELETE /items/{id}"):
        recorded = requests.get(f"rest {route}", {}).get("count", 0)
        assert 0 <= served.get(route, 0) - recorded <= users, route
    polls = requests["poll short"]["count"] + requests["poll long"]["count"]
    assert 0 <= served["GET /events"] - polls <= users
    assert target_stats(running, "sse")["streams_opened"] == requests["sse connect"]["count"]

    report = (run_dir / "report.html").read_text()
    assert "PASSED" in report and "<svg" in report
    junit = ET.parse(run_dir / "junit.xml").getroot()
    assert int(junit.get("failures")) == 0
    assert int(junit.get("tests")) >= len(summary["thresholds"]) > 0


def test_a_failing_threshold_exits_1_with_a_failing_junit_case(targets, tmp_path) -> None:
    running = targets.start(["ws"], args=["--rate", "10"])
    result = wirelab_run(
        "--scenario", "smoke", "--protocols", "ws", "--duration", "4s", "--workers", "1",
        "--threshold", "ws echo:p50<1us", *url_args(running),
        report_dir=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    junit = ET.parse(only_run_dir(tmp_path) / "junit.xml").getroot()
    failed = [
        case.get("name") for case in junit.iter("testcase") if case.find("failure") is not None
    ]
    assert failed == ["ws echo:p50<1us [ws echo]"]
    assert "FAIL ws echo:p50<1us" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--protocols", "mqtt"], "unknown protocol 'mqtt'"),
        (["--threshold", "ws echo:p99<<5ms"], "is not a number"),
        (["--threshold", "ws echo:p98<5ms"], "unknown metric 'p98'"),
        (["--scenario", "no-such-scenario"], "unknown scenario 'no-such-scenario'"),
        (["--duration", "forever"], "not a duration"),
        (["--rate", "fast"], "not a rate"),
        (["--sink", "ftp://x"], "--sink"),
        (["--rate", "500/fortnight"], "not a rate"),
        (["--workers", "0"], "--workers: must be from 1 to 64, got 0"),
        (["--locustfile", "no-such-file.py"], "--locustfile no-such-file.py: no such file"),
    ],
)
def test_usage_errors_exit_2_with_one_line_and_start_nothing(tmp_path, args, needle) -> None:
    result = wirelab_run(*args, report_dir=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


def test_a_bad_scenario_file_names_the_file_and_key(tmp_path) -> None:
    scenario = tmp_path / "mine.yaml"
    scenario.write_text("name: mine\nusers: {ws: 2}\nworkers: many\n")
    result = wirelab_run("--scenario", str(scenario), report_dir=tmp_path / "r", timeout=60)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"wirelab: error: {scenario}: workers: must be a whole number, got 'many'"
    )


def test_a_users_own_locustfile_runs_with_wirelabs_thresholds_report_and_exit_code(
    targets, tmp_path
) -> None:
    """``--locustfile``: the user's classes run with wirelab's metrics plugin, so a threshold
    on their requests decides the exit code and the report counts what the target served."""
    running = targets.start("rest")
    folder = tmp_path / "mine"
    locustfile = write_own_locustfile(folder)
    scenario = folder / "scenario.yaml"
    scenario.write_text(
        "name: own\nduration: 4s\nworkers: 1\nusers: {rest: 3}\nthresholds: ['*:error_rate<1%']\n"
    )
    result = wirelab_run(
        "--scenario", str(scenario), "--locustfile", str(locustfile),
        "--threshold", "own echo:count==0", "--rest-url", running.url("rest"),
        report_dir=tmp_path / "reports",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "reports")
    summary = json.loads((run_dir / "summary.json").read_text())
    (echo,) = summary["requests"]
    assert echo["name"] == "own echo" and echo["failures"] == 0
    served = target_stats(running, "rest")["requests"]["POST /echo"]
    assert 0 <= served - echo["count"] <= 3  # users stopped mid-request, at most one each
    verdicts = {row["expression"]: row["passed"] for row in summary["thresholds"]}
    assert verdicts == {"*:error_rate<1%": True, "own echo:count==0": False}
    assert "FAIL own echo:count==0" in result.stdout
    assert (run_dir / "my_users.py").read_text() == OWN_LOCUSTFILE
    assert "import wirelab.users" in (run_dir / "wirelab_plugins.py").read_text()
    assert "own echo" in (run_dir / "report.html").read_text()


def test_a_locustfile_that_cannot_be_imported_is_exit_2_and_starts_nothing(tmp_path) -> None:
    locustfile = tmp_path / "broken.py"
    locustfile.write_text("import no_such_module_anywhere\n")
    reports = tmp_path / "reports"
    result = wirelab_run("--locustfile", str(locustfile), report_dir=reports, timeout=90)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"wirelab: error: --locustfile {locustfile}: cannot be imported: "
        "ModuleNotFoundError: No module named 'no_such_module_anywhere'"
    )
    assert not reports.exists()


def test_a_worker_killed_mid_run_is_reported_and_earlier_counts_are_kept(targets, tmp_path) -> None:
    running = targets.start(PROTOCOLS, args=["--rate", "20"])
    command = [
        sys.executable, "-m", "wirelab", "run", "--report-dir", str(tmp_path),
        "--scenario", "smoke", "--duration", "16s", "--workers", "2", "--no-progress",
        *url_args(running),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        victim = None
        deadline = time.monotonic() + 30
        while victim is None and time.monotonic() < deadline:
            time.sleep(0.5)
            workers = [
                child
                for child in psutil.Process(process.pid).children(recursive=True)
                if "--worker" in child.cmdline()
            ]
            if len(workers) == 2:
                time.sleep(5)  # let it report for a while first
                victim = workers[0]
        assert victim is not None, "workers never started"
        victim.send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # The run completes with what it has (3 would be "could not complete"); the one worker
    # left may be saturated on a crowded machine, which is the generator verdict's business.
    assert process.returncode in (0, 1, 4), output[-3000:]
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert len(summary["workers"]["lost"]) == 1
    assert "was lost" in output
    assert sum(row["count"] for row in summary["requests"]) > 0
    assert all(row["delivered"] > 0 for row in summary["streams"] if row["protocol"] != "poll")


def test_a_target_that_skips_a_seq_produces_a_reported_gap(targets, tmp_path) -> None:
    """Uses the targets' documented test hook ``--test-skip-seq``."""
    # At 20 events/s seq 160 is published ~8 s after the target starts: inside the run,
    # whether the users start live or replay from the beginning.
    running = targets.start(["sse"], args=["--rate", "20", "--test-skip-seq", "160,161"])
    result = wirelab_run(
        "--scenario", "smoke", "--protocols", "sse", "--duration", "10s", "--workers", "1",
        *url_args(running),
        report_dir=tmp_path,
    )  # fmt: skip
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    (stream,) = [row for row in summary["streams"] if row["name"] == "sse deliver"]
    assert stream["gaps"] >= 1
    assert stream["missing"] >= 2
    assert result.returncode == 1
    failed = [row for row in summary["thresholds"] if not row["passed"]]
    assert [row["expression"] for row in failed] == ["sse:lost==0"]


def test_wirelab_up_runs_a_users_own_locustfile_from_its_web_ui(targets, tmp_path) -> None:
    """``wirelab up --locustfile``: the UI starts the user's classes, measured by wirelab."""
    running = targets.start("rest")
    locustfile = write_own_locustfile(tmp_path / "mine")
    port = free_port()
    argv = [
        sys.executable, "-m", "wirelab", "up", "--protocols", "rest", "--workers", "1",
        "--locustfile", str(locustfile), "--rest-url", running.url("rest"),
        "--web-port", str(port), "--report-dir", str(tmp_path / "reports"),
    ]  # fmt: skip
    up = ManagedProcess(argv, name="wirelab-up", log_path=tmp_path / "up.log").start()
    base = f"http://127.0.0.1:{port}"
    try:
        up.wait_ready(lambda: httpx.get(f"{base}/", timeout=1).status_code == 200, 90)
        # The one worker must be connected before a start is accepted with users on it.
        up.wait_ready(lambda: _stats(base)["workers"], 60)
        httpx.post(f"{base}/swarm", data={"user_count": 2, "spawn_rate": 2}, timeout=5)
        up.wait_ready(lambda: _recorded(base, "own echo"), 60)
    finally:
        up.stop(grace=20)
    run_dir = only_run_dir(tmp_path / "reports")
    assert (run_dir / "my_users.py").read_text() == OWN_LOCUSTFILE
    assert (run_dir / "wirelab_plugins.py").exists()


def _stats(base: str) -> dict:
    return httpx.get(f"{base}/stats/requests", timeout=2).json()


def _recorded(base: str, name: str) -> bool:
    rows = _stats(base)["stats"]
    return any(row["name"] == name and row["num_requests"] > 0 for row in rows)
