"""The generator verdict of real distributed runs: a Locust master and two worker processes
over ZeroMQ, started by the local lab, judged by the same report code as ``wirelab run``.

Each test brings its own locustfile, so the load on the workers' event loops is the test's
choice: one user per worker that holds its loop with 200 ms of work every second (a
generator too busy to run anything else on time), or one that only sleeps. Both shapes
are independent of the machine's speed and load: the stall is 200 ms of the worker's own
CPU time however fast the busy-wait spins (on a crowded host it lasts longer, never less),
and an idle worker's loop lag is its own work, which no neighbour can inflate (what they
cost it is host lag, reported apart).
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.test_metrics_plugin import start_locust
from wirelab.exitcodes import EXIT_GENERATOR_BOUND, EXIT_OK, EXIT_THRESHOLD_FAILED
from wirelab.lab.local import local_lab
from wirelab.locust_command import Headless
from wirelab.metrics.results import load_results
from wirelab.plan import RunPlan
from wirelab.report.build import build_report
from wirelab.scenarios import Scenario
from wirelab.thresholds import parse_threshold

WORKERS = 2
DURATION_S = 10

BLOCKING_LOCUSTFILE = textwrap.dedent(
    """
    import time

    import gevent
    from locust import User, constant, task

    import wirelab.metrics.plugin  # noqa: F401 - records and reports the worker's health
    from wirelab.metrics import recorder


    class Blocker(User):
        wait_time = constant(0)

        @task
        def hold_the_loop(self):
            started, cpu = time.monotonic(), time.thread_time()
            while time.thread_time() - cpu < 0.2:  # 200 ms of work, never yielding
                pass
            recorder().request("rest", "blocked", time.monotonic() - started)
            gevent.sleep(0.8)
    """
)

IDLE_LOCUSTFILE = textwrap.dedent(
    """
    import gevent
    from locust import User, constant, task

    import wirelab.metrics.plugin  # noqa: F401 - records and reports the worker's health
    from wirelab.metrics import recorder


    class Idler(User):
        wait_time = constant(0)

        @task
        def rest(self):
            gevent.sleep(1.0)
            recorder().request("rest", "idle", 0.001)
    """
)


def judge_again(plan: RunPlan, thresholds: list[str]) -> int:
    """The run's report again, under other thresholds (the run dir is the same)."""
    other = RunPlan(
        scenario=plan.scenario,
        thresholds=[parse_threshold(text) for text in thresholds],
        report_dir=plan.report_dir,
        run_id=plan.run_id,
    )
    return build_report(other, incomplete=[], wall_time_s=0.0)


def distributed_run(tmp_path: Path, locustfile_source: str, thresholds: list[str]):
    """One headless run of ``locustfile_source`` on a master and two workers, reported as
    ``wirelab run`` reports; returns the plan, the exit code and summary.json."""
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(locustfile_source)
    # The users are the locustfile's own; the scenario names the run's shape.
    scenario = Scenario(
        name="generator-test", duration=DURATION_S, workers=WORKERS, users={"rest": WORKERS}
    )
    plan = RunPlan(
        scenario=scenario,
        thresholds=[parse_threshold(text) for text in thresholds],
        report_dir=tmp_path / "reports",
    )
    (plan.run_dir / "logs").mkdir(parents=True)
    env = plan.process_environment({})
    started = time.monotonic()
    with local_lab(plan.run_dir) as lab:
        lab.start_master(
            [locustfile],
            env=env,
            workers=WORKERS,
            worker_wait_s=60,
            # One user per worker.
            headless=Headless(users=WORKERS, spawn_rate=WORKERS, run_time_s=DURATION_S),
        )
        lab.start_workers([locustfile], WORKERS, env=env)
        master_code = lab.wait_master(DURATION_S + 90)
        assert master_code == 0, lab.master.log_tail()
    code = build_report(plan, incomplete=[], wall_time_s=time.monotonic() - started)
    summary = json.loads((plan.run_dir / "summary.json").read_text())
    return plan, code, summary


def failed_cases(run_dir: Path) -> list[str]:
    junit = ET.parse(run_dir / "junit.xml").getroot()
    return [case.get("name") for case in junit.iter("testcase") if case.find("failure") is not None]


def test_a_worker_whose_loop_is_held_200ms_every_second_is_generator_bound(
    tmp_path, capsys
) -> None:
    plan, code, summary = distributed_run(
        tmp_path, BLOCKING_LOCUSTFILE, ["generator:loop_lag_p99<20ms", "blocked:count>0"]
    )
    generator = summary["generator"]
    assert generator["verdict"] == "generator-bound", generator
    # Every interval holds a 200 ms stall: nearly the whole run is affected.
    assert generator["share_affected"] >= 0.5, generator
    assert generator["distorts"] == ["request latency"]
    assert len(generator["workers"]) == WORKERS
    for worker, row in generator["workers"].items():
        assert row["bound"], (worker, row)
        # A stall of 200 ms is seen whole, whatever the machine's speed.
        assert row["loop_lag_max_ms"] >= 150, row
        assert any(reason.startswith(f"{worker}: ") for reason in generator["reasons"])
    assert generator["loop_lag_p99_ms"] > 20

    # The threshold on the generator fails: exit 1, and JUnit says why, twice.
    assert code == EXIT_THRESHOLD_FAILED
    assert summary["verdict"] == "FAILED"
    failed = failed_cases(plan.run_dir)
    assert "generator:loop_lag_p99<20ms [generator]" in failed
    assert any(name.startswith("generator kept up") for name in failed)
    out = capsys.readouterr().out
    assert "FAIL generator:loop_lag_p99<20ms" in out
    assert "generator: GENERATOR-BOUND" in out

    # Every threshold held, but the figures are the generator's: exit 4, not a pass.
    assert judge_again(plan, ["blocked:count>0"]) == EXIT_GENERATOR_BOUND
    summary = json.loads((plan.run_dir / "summary.json").read_text())
    assert summary["verdict"] == "GENERATOR-BOUND" and summary["passed"] is False
    assert [name for name in failed_cases(plan.run_dir)] == [
        next(name for name in failed if name.startswith("generator kept up"))
    ]
    assert "GENERATOR-BOUND (exit code 4)" in capsys.readouterr().out
    report = (plan.run_dir / "report.html").read_text()
    assert "GENERATOR-BOUND" in report and "<h2>Generator</h2>" in report


def test_an_idle_generator_is_clean_and_its_thresholds_hold(tmp_path, capsys) -> None:
    plan, code, summary = distributed_run(
        tmp_path, IDLE_LOCUSTFILE, ["generator:loop_lag_p99<20ms", "generator:cpu_max<85%"]
    )
    generator = summary["generator"]
    assert code == EXIT_OK, generator
    assert generator["verdict"] == "clean" and generator["reasons"] == []
    assert generator["distorts"] == []
    assert len(generator["workers"]) == WORKERS
    for row in generator["workers"].values():
        # Measured, not absent: a timer woke ~100 times a second in every interval.
        assert row["intervals"] >= DURATION_S // 2 and row["loop_lag_p99_ms"] is not None
    assert failed_cases(plan.run_dir) == []
    assert "generator: clean" in capsys.readouterr().out
    # The per-interval figures reach the time series (and so InfluxDB and Grafana).
    lag = [
        p for p in load_results(plan.run_dir).series("worker_health") if "loop_lag_p99" in p.fields
    ]
    assert {p.tags["worker"] for p in lag} == set(generator["workers"])


@pytest.mark.parametrize("workers", [0])
def test_a_local_run_measures_its_own_loop_lag(tmp_path, workers) -> None:
    run = start_locust(tmp_path, workers=workers, users=2, run_time="3s")
    assert run.wait(timeout=30) == 0, run.master.log_tail()
    record = load_results(run.report_dir).generator
    assert record is not None and set(record.workers) == {"local"}
    local = record.workers["local"]
    assert local.intervals and local.loop_lag.count > 0
