"""The chart's master and worker command (helm/wirelab/files/cluster_run.py), run for real.

The pods cannot run here, but their command can: the master and a worker as two processes
on loopback against real targets, with the environment the chart gives them, exactly as the
Job and the worker Job would run them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.k8s_tools import CHART
from wirelab.processes import free_port

LAUNCHER = CHART / "files" / "cluster_run.py"

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


def launcher_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRELAB_")}
    env.update(
        WIRELAB_RUN_REPORT_DIR=str(tmp_path / "reports"),
        WIRELAB_RUN_SCRATCH_DIR=str(tmp_path / "scratch"),
        WIRELAB_MASTER_HOST="127.0.0.1",
        WIRELAB_MASTER_PORT=str(free_port()),
        WIRELAB_RUN_WORKERS_MAX_WAIT="30",
        WIRELAB_RUN_TARGETS_MAX_WAIT="20",
    )
    env.update(extra)
    return env


def launch(role: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(LAUNCHER), role], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def test_master_and_worker_pods_run_the_scenario_and_exit_with_the_verdict(targets, tmp_path):
    """A threshold that must fail (rest:count==0) proves the run completed, was judged, and
    that the master's exit code is wirelab's (1), which the Job reports."""
    rest = targets.start("rest")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)
    env = launcher_env(
        tmp_path,
        WIRELAB_RUN_SCENARIO=str(scenario),
        WIRELAB_RUN_THRESHOLDS="rest:count==0",
        WIRELAB_REST_URL=rest.url("rest"),
    )

    master = launch("master", env, tmp_path / "master.log")
    worker = launch("worker", env, tmp_path / "worker.log")
    try:
        master_code = master.wait(timeout=90)
        worker_code = worker.wait(timeout=30)
    finally:
        for process in (master, worker):
            if process.poll() is None:
                process.kill()
                process.wait()

    log = (tmp_path / "master.log").read_text()
    assert master_code == 1, log
    assert worker_code == 0, (tmp_path / "worker.log").read_text()
    (summary_path,) = (tmp_path / "reports").glob("k8s-job-*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["exit_code"] == 1
    assert "(exit code 1)" in log  # the verdict is in the pod log for `kubectl logs`


def test_a_bad_scenario_is_a_usage_error_with_exit_code_2(tmp_path):
    env = launcher_env(tmp_path, WIRELAB_RUN_SCENARIO="no-such-scenario")
    result = subprocess.run(
        [sys.executable, str(LAUNCHER), "master"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("wirelab: error: unknown scenario 'no-such-scenario'")
    assert "Traceback" not in result.stderr


def test_protocols_narrow_the_scenario_to_the_targets_given(tmp_path):
    sys.path.insert(0, str(LAUNCHER.parent))
    try:
        import cluster_run  # noqa: PLC0415
    finally:
        sys.path.remove(str(LAUNCHER.parent))
    env = launcher_env(
        tmp_path,
        WIRELAB_RUN_SCENARIO="smoke",
        WIRELAB_RUN_PROTOCOLS="rest,ws",
        WIRELAB_REST_URL="http://rest:8080",
        WIRELAB_WS_URL="ws://ws:8082",
    )
    plan = cluster_run._plan(env)
    assert plan.scenario.protocols == ["rest", "ws"]
    without = dict(env, WIRELAB_RUN_PROTOCOLS="")
    with pytest.raises(cluster_run.UsageError, match="no target URL for sse, grpc"):
        cluster_run._plan(without)


def test_targets_that_never_become_ready_make_the_run_incomplete(tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)
    env = launcher_env(
        tmp_path,
        WIRELAB_RUN_SCENARIO=str(scenario),
        WIRELAB_RUN_TARGETS_MAX_WAIT="1",
        WIRELAB_REST_URL=f"http://127.0.0.1:{free_port()}",
    )
    result = subprocess.run(
        [sys.executable, str(LAUNCHER), "master"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "targets not ready after 1s: rest" in result.stdout


@pytest.mark.parametrize("role", ["master", "ui"])
def test_the_master_rebalances_users_onto_workers_an_autoscaler_adds(role, tmp_path):
    sys.path.insert(0, str(LAUNCHER.parent))
    try:
        import cluster_run  # noqa: PLC0415
    finally:
        sys.path.remove(str(LAUNCHER.parent))
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)
    env = launcher_env(
        tmp_path, WIRELAB_RUN_SCENARIO=str(scenario), WIRELAB_REST_URL="http://rest:8080"
    )
    plan = cluster_run._plan(env)
    argv = cluster_run.master_argv(plan, Path("locustfile.py"), env, headless=role == "master")
    assert "--enable-rebalancing" in argv
    assert argv[argv.index("--master-bind-host") + 1] == "0.0.0.0"
    if role == "master":
        assert argv[argv.index("--expect-workers") + 1] == "1"
