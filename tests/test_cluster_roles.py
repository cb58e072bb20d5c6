"""The chart's pods' commands, ``wirelab cluster master|worker|ui``, run for real.

The pods cannot run here, but their command can: the master and a worker as two processes
on loopback against real targets, with the environment the chart gives them, exactly as the
Job and the worker Job would run them. The plan they build is the one ``wirelab run``
builds (``wirelab.plan``), so its checks hold here too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.own_locustfile import write_own_locustfile
from wirelab.exitcodes import UsageError
from wirelab.locust_command import master_argv
from wirelab.plan import build_plan
from wirelab.processes import ManagedProcess, free_port
from wirelab.run_options import request_from_env

SCENARIO = """\
name: k8s-job
description: a short REST-only run for the chart's job mode
duration: 2s
workers: 1
spawn_rate: 10
users:
  rest: 2
thresholds:
  - "rest:count>0"
"""


def role_env(tmp_path: Path, scenario: str | None = None, **extra: str) -> dict[str, str]:
    """What the chart sets, pointed at this machine: loopback, free ports, temp dirs, and
    ``scenario``'s text as the scenario file (the chart's run.scenarioFile)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRELAB_")}
    if scenario is not None:
        path = tmp_path / "scenario.yaml"
        path.write_text(scenario)
        env["WIRELAB_RUN_SCENARIO"] = str(path)
    env.update(
        WIRELAB_RUN_REPORT_DIR=str(tmp_path / "reports"),
        WIRELAB_RUN_SCRATCH_DIR=str(tmp_path / "scratch"),
        WIRELAB_MASTER_HOST="127.0.0.1",
        WIRELAB_MASTER_PORT=str(free_port()),
        WIRELAB_BIND_HOST="127.0.0.1",
        WIRELAB_RUN_WORKERS_MAX_WAIT="30s",
        WIRELAB_RUN_TARGETS_MAX_WAIT="20",
    )
    env.update(extra)
    return env


def cluster(role: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "wirelab", "cluster", role],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def cluster_to_the_end(role: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wirelab", "cluster", role],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def run_master_and_worker(env: dict[str, str], tmp_path: Path) -> tuple[int, str, dict]:
    """The master and a worker role to the end: the master's code, log and summary."""
    master = cluster("master", env, tmp_path / "master.log")
    worker = cluster("worker", env, tmp_path / "worker.log")
    try:
        master_code = master.wait(timeout=120)
        worker_code = worker.wait(timeout=30)
    finally:
        for process in (master, worker):
            if process.poll() is None:
                process.kill()
                process.wait()
    log = (tmp_path / "master.log").read_text()
    assert worker_code == 0, (tmp_path / "worker.log").read_text()
    (summary_path,) = (tmp_path / "reports").glob("*/summary.json")
    return master_code, log, json.loads(summary_path.read_text())


def test_master_and_worker_pods_run_the_scenario_and_exit_with_the_verdict(targets, tmp_path):
    """A threshold that must fail (rest:count==0) proves the run completed, was judged, and
    that the master's exit code is wirelab's (1), which the Job reports."""
    rest = targets.start("rest")
    env = role_env(
        tmp_path,
        SCENARIO,
        WIRELAB_RUN_THRESHOLDS="rest:count==0",
        WIRELAB_REST_URL=rest.url("rest"),
    )
    code, log, summary = run_master_and_worker(env, tmp_path)
    assert code == 1, log
    assert summary["exit_code"] == 1
    failed = [row["expression"] for row in summary["thresholds"] if not row["passed"]]
    assert failed == ["rest:count==0"]
    assert "(exit code 1)" in log  # the verdict is in the pod log for `kubectl logs`


def test_a_locustfile_of_the_users_own_runs_on_the_pods_with_wirelabs_verdict(targets, tmp_path):
    """``WIRELAB_RUN_LOCUSTFILE`` (the chart's run.locustfile) is ``--locustfile``: the
    user's classes run with wirelab's plugin, so their requests are judged and reported."""
    rest = targets.start("rest")
    own = write_own_locustfile(tmp_path / "run", "locustfile.py")
    env = role_env(
        tmp_path,
        # The scenario's own threshold is about its REST users, which the locustfile replaces.
        SCENARIO.replace('  - "rest:count>0"', '  - "*:error_rate<1%"'),
        WIRELAB_RUN_LOCUSTFILE=str(own),
        WIRELAB_RUN_THRESHOLDS="own echo:count>0",
        WIRELAB_REST_URL=rest.url("rest"),
    )
    code, log, summary = run_master_and_worker(env, tmp_path)
    assert code == 0, log
    assert [row["name"] for row in summary["requests"]] == ["own echo"]
    assert all(row["passed"] for row in summary["thresholds"])


@pytest.mark.parametrize("role", ["master", "worker", "ui"])
def test_a_bad_setting_is_a_usage_error_with_exit_code_2(role, tmp_path):
    env = role_env(tmp_path, WIRELAB_RUN_SCENARIO="no-such-scenario")
    env.update(WIRELAB_WEB_USER="operator", WIRELAB_WEB_PASSWORD="pw-123456")
    result = cluster_to_the_end(role, env)
    assert result.returncode == 2
    assert result.stderr.startswith("wirelab: error: unknown scenario 'no-such-scenario'")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "reports").exists()


def test_the_ui_role_refuses_to_serve_without_a_login(tmp_path):
    env = role_env(tmp_path, WIRELAB_REST_URL="http://rest:8080", WIRELAB_RUN_PROTOCOLS="rest")
    result = cluster_to_the_end("ui", env)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "WIRELAB_WEB_USER and WIRELAB_WEB_PASSWORD" in line


def test_protocols_narrow_the_scenario_and_every_protocol_left_needs_a_url(tmp_path):
    env = role_env(
        tmp_path,
        WIRELAB_RUN_SCENARIO="smoke",
        WIRELAB_RUN_PROTOCOLS="rest,ws",
        WIRELAB_REST_URL="http://rest:8080",
        WIRELAB_WS_URL="ws://ws:8082",
    )
    plan = build_plan(request_from_env(env), lab_targets=False)
    assert plan.scenario.protocols == ["rest", "ws"]
    without = dict(env, WIRELAB_RUN_PROTOCOLS="")
    with pytest.raises(UsageError, match="no target URL for sse, grpc"):
        build_plan(request_from_env(without), lab_targets=False)


def test_targets_that_never_become_ready_make_the_run_incomplete(tmp_path):
    env = role_env(
        tmp_path,
        SCENARIO,
        WIRELAB_RUN_TARGETS_MAX_WAIT="1",
        WIRELAB_REST_URL=f"http://127.0.0.1:{free_port()}",
    )
    result = cluster_to_the_end("master", env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "targets not ready after 1s: rest" in result.stdout


def test_the_master_rebalances_users_onto_workers_an_autoscaler_adds():
    argv = master_argv(
        [Path("locustfile.py")],
        bind_host="0.0.0.0",
        bind_port=5557,
        workers=3,
        worker_wait_s=300,
        csv_prefix=Path("locust"),
    )
    assert "--enable-rebalancing" in argv
    assert argv[argv.index("--expect-workers") + 1] == "3"
    assert argv[argv.index("--expect-workers-max-wait") + 1] == "300"


def test_the_ui_role_reports_every_test_and_the_one_running_when_the_pod_stops(targets, tmp_path):
    """Lab mode's pod command: a test ended by its run time gets its report while the UI
    stays up; SIGTERM to the role (the pod's PID 1) stops Locust, whose running test is
    written as it quits and then reported; the role exits with Locust's code."""
    rest = targets.start("rest")
    port = free_port()
    env = role_env(
        tmp_path,
        SCENARIO,
        WIRELAB_RUN_THRESHOLDS="rest:count==0",
        WIRELAB_REST_URL=rest.url("rest"),
        WIRELAB_WEB_PORT=str(port),
        WIRELAB_WEB_USER="admin",
        WIRELAB_WEB_PASSWORD="lab-pw-12345",
    )
    command = [sys.executable, "-m", "wirelab", "cluster"]
    ui = ManagedProcess([*command, "ui"], name="ui", env=env, log_path=tmp_path / "ui.log")
    worker = ManagedProcess(
        [*command, "worker"], name="worker", env=env, log_path=tmp_path / "worker.log"
    )
    base = f"http://127.0.0.1:{port}"
    reports = tmp_path / "reports"

    def reported() -> list[Path]:
        tests = reports.glob("*/*/summary.json")
        return sorted(tests, key=lambda path: int(path.parent.name.rpartition("-")[2]))

    try:
        ui.start()
        worker.start()
        with httpx.Client(base_url=base, timeout=5) as operator:
            ui.wait_ready(lambda: operator.get("/login").is_success, 90)
            operator.post("/wirelab/login", data={"username": "admin", "password": "lab-pw-12345"})
            ui.wait_ready(lambda: operator.get("/stats/requests").json()["workers"], 60)
            form = {"user_count": 2, "spawn_rate": 2, "run_time": "3s"}
            assert operator.post("/swarm", data=form).json()["success"]
            ui.wait_ready(lambda: len(reported()) == 1, 90)
            assert operator.get("/stats/requests").json()["state"] == "stopped"

            assert operator.post("/swarm", data={"user_count": 2, "spawn_rate": 2}).is_success
            ui.wait_ready(lambda: operator.get("/stats/requests").json()["state"] == "running", 60)
            ui.wait_ready(
                lambda: sum(
                    r["num_requests"] for r in operator.get("/stats/requests").json()["stats"]
                ),
                60,
            )
        os.kill(ui.pid, signal.SIGTERM)  # the kubelet signals PID 1 only
        deadline = time.monotonic() + 60
        while ui.alive and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ui.returncode == 0, ui.log_tail()
    finally:
        worker.stop(grace=10)
        ui.stop(grace=10)
    first, second = (json.loads(path.read_text()) for path in reported())
    for summary in (first, second):
        assert summary["exit_code"] == 1 and summary["verdict"] == "FAILED"
        assert [row["expression"] for row in summary["thresholds"]] == [
            "rest:count>0",
            "rest:count==0",
        ]
        assert sum(row["count"] for row in summary["requests"]) > 0
    log = (tmp_path / "ui.log").read_text()
    for summary in (first, second):
        assert f"wirelab: test {summary['run_id']} FAILED (exit 1): " in log, log[-3000:]
