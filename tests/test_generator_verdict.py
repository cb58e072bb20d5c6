"""The generator verdict: loop-lag measurement, the master's merge, the rules, the gates.

Real runs are in ``test_generator_runs.py``; here each rule is pinned on records built from
the same payloads the workers send. The master's side (``RunMetrics``) runs in a child
process: importing the plugin imports Locust, which monkey-patches the interpreter.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from xml.etree import ElementTree as ET

import gevent
import pytest

from tests.test_metrics_plugin import run_python
from wirelab.exitcodes import (
    EXIT_GENERATOR_BOUND,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_THRESHOLD_FAILED,
)
from wirelab.metrics.generator import (
    GeneratorHealth,
    distorted_figures,
    generator_status,
    judge,
    watch,
)
from wirelab.metrics.health import health_sample
from wirelab.metrics.histogram import LogHistogram
from wirelab.metrics.lineprotocol import health_point
from wirelab.metrics.looplag import LoopLag, LoopLagMonitor
from wirelab.metrics.series import RequestSeries, StreamSeries
from wirelab.plan import RunPlan
from wirelab.report.build import build_report
from wirelab.report.html import CHART_SECTIONS, chart_series
from wirelab.scenarios import Scenario, builtin_names, load_scenario
from wirelab.thresholds import evaluate, parse_threshold

MS = 1000.0  # µs


def interval_lag(stalls_ms: tuple[float, ...] = (), punctual: int = 100) -> LoopLag:
    """An interval's samples: ``punctual`` wake-ups 0.5 ms late, plus each stall (the
    process's own work: it ran all along) as the monitor records it."""
    monitor = LoopLagMonitor()
    for _ in range(punctual):
        monitor.record(0.5 * MS, 0.5 * MS, 10 * MS)
    for stall in stalls_ms:
        monitor.record(stall * MS, stall * MS, 10 * MS)
    return monitor.take()


def payload(cpu: float = 10.0, stalls_ms: tuple[float, ...] = ()) -> dict:
    """One worker report's health part, as :func:`wirelab.metrics.health.health_report`
    makes it (with the CPU figure chosen)."""
    lag = interval_lag(stalls_ms)
    return {
        "health": {**health_sample(lag), "cpu_percent": cpu},
        "loop_lag": lag.loop.to_wire(),
        "host_lag": lag.host.to_wire(),
    }


def record_of(**workers: list[dict]) -> GeneratorHealth:
    """A run whose workers each sent these payloads, one a second from t=0."""
    health = GeneratorHealth(1.0)
    health.start(0.0)
    for name, payloads in workers.items():
        health.add(name, {}, 0.0)  # the report before the window: where interval 1 starts
        for index, data in enumerate(payloads):
            health.add(name, data, float(index + 1))
    return health


def quiet(count: int) -> list[dict]:
    return [payload() for _ in range(count)]


# -- measuring -----------------------------------------------------------------------------


def test_the_monitor_records_a_200ms_stall_whole_with_the_grid_points_it_swallowed() -> None:
    monitor = LoopLagMonitor()
    monitor.start()
    gevent.sleep(0.05)
    started = time.thread_time()
    while time.thread_time() - started < 0.2:  # 200 ms of work that never yields
        pass
    gevent.sleep(0.05)
    monitor.stop()
    lag = monitor.take().loop
    # The timer was due at most one period into the stall, so it woke >= 190 ms late.
    assert lag.max >= 190 * MS * 0.99
    # ...and the 18+ grid points the stall swallowed count too: the 9th-worst is >= 100 ms.
    assert lag.quantile((lag.count - 9) / (lag.count - 1)) >= 100 * MS * 0.99
    gevent.sleep(0.05)
    assert monitor.take().loop.count == 0, "a stopped monitor records nothing"


HOST_STALLED = textwrap.dedent(
    """
    import sys, time
    import gevent
    from wirelab.metrics.looplag import LoopLagMonitor

    monitor = LoopLagMonitor()
    monitor.start()
    gevent.sleep(0.1)
    print("ready", flush=True)
    sys.stdin.readline()  # the test stops and continues this process meanwhile
    gevent.sleep(0.1)
    lag = monitor.take()
    print(lag.loop.max, lag.loop.quantile(0.99), lag.host.max, flush=True)
    """
)


def test_a_process_the_host_does_not_run_has_host_lag_not_loop_lag(tmp_path) -> None:
    # SIGSTOP is the host at its worst: the process is ready and gets no CPU at all.
    child = subprocess.Popen(
        [sys.executable, "-c", HOST_STALLED],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(0.3)
        os.kill(child.pid, signal.SIGCONT)
        out, _ = child.communicate("go\n", timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    loop_max, loop_p99, host_max = (float(value) for value in out.split())
    assert host_max >= 290 * MS * 0.99  # stopped 300 ms, due at most 10 ms into it
    assert loop_max < 20 * MS and loop_p99 < 20 * MS  # none of it was the process's work


def test_a_stall_counts_once_per_period_it_lasted_split_by_whose_it_was() -> None:
    monitor = LoopLagMonitor(0.010)
    monitor.record(35 * MS, 35 * MS, 10 * MS)  # the process ran the whole time: its own
    lag = monitor.take()
    assert lag.loop.count == 4  # 35, 25, 15 and 5 ms late
    assert lag.loop.max == pytest.approx(35 * MS) and lag.loop.min == pytest.approx(5 * MS)
    assert lag.host.max == 0 and lag.host.count == 4
    monitor.record(40 * MS, 10 * MS, 10 * MS)  # ran 10 of the 40 ms: a quarter its own
    lag = monitor.take()
    assert lag.loop.count == lag.host.count == 4  # one per grid point of the stall
    assert lag.loop.max == pytest.approx(10 * MS) and lag.loop.zeros == 3  # 10, 0, 0, 0
    assert lag.host.max == pytest.approx(30 * MS) and lag.host.zeros == 1  # 30, 20, 10, 0
    monitor.record(-0.2 * MS, 0.0, 10 * MS)  # woke a hair early: not late at all
    assert monitor.take().loop.zeros == 1


def test_the_health_sample_carries_the_intervals_loop_lag_percentiles() -> None:
    sample = health_sample(interval_lag((40.0,)))
    assert sample["loop_lag_max_ms"] == pytest.approx(40.0, rel=0.011)
    assert sample["loop_lag_p50_ms"] == pytest.approx(0.5, rel=0.011)
    assert sample["loop_lag_p99_ms"] > 20  # 40 and 30 ms: two of 104 samples
    assert sample["host_lag_p99_ms"] == 0
    assert health_sample()["loop_lag_p99_ms"] is None  # an interval without samples


def test_loop_lag_histograms_merge_exactly_per_worker_and_across_workers() -> None:
    rng = random.Random(21)
    samples: dict[str, list[float]] = {"w1": [], "w2": []}
    health = GeneratorHealth(1.0)
    health.start(0.0)
    for second in range(1, 6):
        for worker, values in samples.items():
            lag = LoopLag()
            for _ in range(rng.randint(50, 120)):
                value = rng.lognormvariate(7, 1.5)
                lag.loop.record(value)
                values.append(value)
            data = {"health": health_sample(lag), "loop_lag": lag.loop.to_wire()}
            health.add(worker, data, float(second))

    def histogram(values: list[float]) -> LogHistogram:
        result = LogHistogram()
        for value in values:
            result.record(value)
        return result

    every = histogram(samples["w1"] + samples["w2"])
    assert health.loop_lag.buckets == every.buckets and health.loop_lag.count == every.count
    for worker, values in samples.items():
        assert health.workers[worker].loop_lag.buckets == histogram(values).buckets
    # metrics.json keeps it whole.
    again = GeneratorHealth.from_wire(json.loads(json.dumps(health.to_wire())))
    assert again.loop_lag.buckets == every.buckets
    assert judge(again) == judge(health)


def test_only_reports_inside_the_users_window_count() -> None:
    health = GeneratorHealth(1.0)
    health.add("w1", payload(cpu=99.0), 1.0)  # before the users start
    assert judge(health)["verdict"] == "unmeasured"
    health.start(1.5)
    health.add("w1", payload(), 2.0)
    health.stop(2.5)
    health.add("w1", payload(cpu=99.0), 3.0)  # stopping users
    (interval,) = health.workers["w1"].intervals
    assert (interval.start, interval.end) == (1.5, 2.0)  # clipped to the window


# -- the rules -------------------------------------------------------------------------------


def test_an_idle_generator_is_clean_with_nothing_affected() -> None:
    verdict = judge(record_of(w1=quiet(30), w2=quiet(30)))
    assert verdict["verdict"] == "clean"
    assert verdict["share_affected"] == 0.0 and verdict["distorts"] == [] == verdict["reasons"]
    assert verdict["cpu_max"] == 10.0 and verdict["loop_lag_p99_ms"] < 1


def test_an_isolated_interval_over_the_lag_bound_is_noise_not_a_verdict() -> None:
    payloads = quiet(20)
    payloads[7] = payload(stalls_ms=(45.0,))  # one hiccup of a busy host
    verdict = judge(record_of(w1=payloads))
    assert verdict["workers"]["w1"]["intervals_over"] == 1
    assert verdict["verdict"] == "clean" and verdict["share_affected"] == 0.0


def test_three_consecutive_intervals_over_a_bound_are_a_phase_and_generator_bound() -> None:
    payloads = quiet(40)
    for index in (10, 11, 12):
        payloads[index] = payload(cpu=97.0)
    verdict = judge(
        record_of(w1=payloads, w2=quiet(40)),
        streams=[_stream("ws deliver", delivered=10)],
        requests=[_request("ws connect")],
    )
    assert verdict["verdict"] == "generator-bound"
    assert verdict["workers"]["w1"]["bound"] and not verdict["workers"]["w2"]["bound"]
    assert verdict["share_affected"] == pytest.approx(3 / 40)
    assert verdict["distorts"] == ["delivery lag", "connect times"]
    (reason,) = verdict["reasons"]
    assert reason.startswith("w1: over a bound for 3 consecutive intervals")
    assert "CPU max 97%, above 85% in 3 of 40 intervals" in reason


def test_two_consecutive_intervals_over_a_bound_are_not_enough() -> None:
    payloads = quiet(40)
    payloads[10] = payloads[11] = payload(cpu=97.0)
    assert judge(record_of(w1=payloads))["verdict"] == "clean"


def test_cpu_saturation_that_comes_and_goes_counts_by_its_share() -> None:
    payloads = [payload(cpu=99.0) if index % 5 == 0 else payload() for index in range(40)]
    verdict = judge(record_of(w1=payloads))
    assert verdict["verdict"] == "generator-bound"
    assert "CPU above 85% in 20% of intervals" in verdict["reasons"][0]
    assert verdict["share_affected"] == pytest.approx(0.2)


def test_scattered_stalls_count_through_the_runs_loop_lag_p99() -> None:
    # A 100 ms stall every 5 s: 1.8% of the time late by 20 ms or more, never in a row.
    stalled = [payload(stalls_ms=(100.0,)) if i % 5 == 0 else payload() for i in range(40)]
    verdict = judge(record_of(w1=stalled))
    assert verdict["workers"]["w1"]["longest_over"] == 1
    assert verdict["verdict"] == "generator-bound"
    assert verdict["reasons"][0].startswith("w1: loop-lag p99 ")
    assert verdict["loop_lag_p99_ms"] > 20
    # A 30 ms hiccup every 10 s is well under 1% of the time: clean.
    hiccups = [payload(stalls_ms=(30.0,)) if i % 10 == 0 else payload() for i in range(40)]
    assert judge(record_of(w1=hiccups))["verdict"] == "clean"


def test_the_share_affected_is_the_union_of_the_bound_workers_time_over_a_bound() -> None:
    w1 = [payload(cpu=99.0) if index < 10 else payload() for index in range(20)]
    w2 = [payload(cpu=99.0) if 5 <= index < 15 else payload() for index in range(20)]
    verdict = judge(record_of(w1=w1, w2=w2))
    assert verdict["share_affected"] == pytest.approx(15 / 20)  # [0, 15) of [0, 20)
    assert [reason.split(":")[0] for reason in verdict["reasons"]] == ["w1", "w2"]


def test_the_distorted_figures_are_the_kinds_the_run_measured() -> None:
    reconnecting = _stream("sse deliver", delivered=5)
    reconnecting.reconnect_time.record(1200 * MS)
    figures = distorted_figures(
        [_request("rest GET /items/{id}"), _request("sse connect"), RequestSeries("ws", "idle")],
        [reconnecting, _stream("grpc deliver", delivered=0)],
    )
    assert figures == ["delivery lag", "request latency", "connect times", "reconnect times"]
    assert distorted_figures([], []) == []


def test_a_run_without_health_reports_is_unmeasured() -> None:
    verdict = judge(None)
    assert verdict["verdict"] == "unmeasured" and verdict["share_affected"] is None
    assert verdict["reasons"]


def _request(name: str) -> RequestSeries:
    series = RequestSeries(name.split(maxsplit=1)[0], name)
    series.record(2 * MS)
    return series


def _stream(name: str, *, delivered: int) -> StreamSeries:
    series = StreamSeries(name.split(maxsplit=1)[0], name)
    series.delivered = delivered
    return series


# -- thresholds ------------------------------------------------------------------------------


def test_generator_thresholds_judge_the_generator_verdict() -> None:
    stalled = judge(record_of(w1=[payload(cpu=90.0, stalls_ms=(200.0,)) for _ in range(5)]))
    thresholds = [
        parse_threshold(text)
        for text in (
            "generator:loop_lag_p99<20ms",
            "generator:cpu_max<85%",
            "generator:cpu_mean<95%",
            "generator:share_affected<50%",
        )
    ]
    verdicts = evaluate(thresholds, {}, {}, duration_s=5, generator=stalled)
    assert [(v.subject, v.passed) for v in verdicts] == [
        ("generator", False),
        ("generator", False),
        ("generator", True),
        ("generator", False),
    ]
    assert verdicts[1].detail == "90.0% < 85%"
    assert verdicts[0].observed == stalled["loop_lag_p99_ms"]
    # Nothing measured is not a pass.
    (unmeasured,) = evaluate(thresholds[:1], {}, {}, duration_s=5, generator=judge(None))
    assert not unmeasured.passed and unmeasured.detail == "the generator was not measured"


def test_every_built_in_scenario_gates_on_the_generator() -> None:
    for name in builtin_names():
        thresholds = load_scenario(name).thresholds
        assert "generator:loop_lag_p99<20ms" in thresholds, name
        assert "generator:cpu_max<85%" in thresholds, name
    # Narrowing a scenario to some protocols keeps its generator gates.
    scenario = load_scenario("smoke")
    scenario.select_protocols(["ws"])
    assert "generator:cpu_max<85%" in scenario.thresholds


# -- the report: exit code, summary, terminal, JUnit, HTML ---------------------------------


def recorded_run(tmp_path, *, cpu: float, thresholds: list[str]) -> RunPlan:
    """A run dir as the master writes it, from two workers' reports at ``cpu``."""
    plan = RunPlan(
        scenario=Scenario(name="verdict", users={"ws": 2}),
        thresholds=[parse_threshold(text) for text in thresholds],
        report_dir=tmp_path,
    )
    reports = [{**payload(cpu=cpu), "requests": [_request("ws echo").to_wire()]}] * 10
    (tmp_path / "reports.json").write_text(json.dumps(reports))
    run_python(
        tmp_path,
        f"""
        import json, time

        from wirelab.metrics.plugin import PluginConfig, RunMetrics

        reports = json.loads((tmp / "reports.json").read_text())
        config = PluginConfig(run_id={plan.run_id!r}, report_dir=Path({str(plan.run_dir)!r}))
        run = RunMetrics(config)
        run.started_at = time.time()
        run.generator.start(0.0)
        for worker in ("w1", "w2"):
            for second, data in enumerate(reports, 1):  # one report a second
                run.aggregate.add(worker, data)
                run.generator.add(worker, data, float(second))
        run.finish()
        """,
    )
    return plan


def junit_cases(plan: RunPlan) -> dict[str, str]:
    root = ET.parse(plan.run_dir / "junit.xml").getroot()
    return {
        case.get("name"): "failed" if case.find("failure") is not None else "ok"
        for case in root.iter("testcase")
    }


def test_thresholds_held_but_the_generator_bound_exits_4_and_says_so_everywhere(
    tmp_path, capsys
) -> None:
    plan = recorded_run(tmp_path, cpu=99.0, thresholds=["ws echo:count>0"])
    assert build_report(plan, incomplete=[], wall_time_s=1.0) == EXIT_GENERATOR_BOUND
    summary = json.loads((plan.run_dir / "summary.json").read_text())
    assert summary["verdict"] == "GENERATOR-BOUND" and summary["passed"] is False
    assert summary["generator"]["verdict"] == "generator-bound"
    assert summary["generator"]["distorts"] == ["request latency"]
    assert summary["generator"]["share_affected"] == pytest.approx(1.0)
    cases = junit_cases(plan)
    assert cases.pop("ws echo:count>0 [ws echo]") == "ok"
    ((name, outcome),) = cases.items()
    assert name.startswith("generator kept up") and outcome == "failed"
    out = capsys.readouterr().out
    assert "generator: GENERATOR-BOUND: The load generator was saturated in 100% of the run" in out
    assert "    w1: over a bound for 10 consecutive intervals" in out
    assert f"run {plan.run_id}: GENERATOR-BOUND (exit code 4)" in out
    report = (plan.run_dir / "report.html").read_text()
    assert "<span class='verdict bound'>GENERATOR-BOUND</span>" in report
    assert "request latency it measured then" in report


def test_a_failed_threshold_is_exit_1_and_an_incomplete_run_3_whatever_the_generator(
    tmp_path,
) -> None:
    plan = recorded_run(tmp_path, cpu=99.0, thresholds=["ws echo:count>100"])
    assert build_report(plan, incomplete=[], wall_time_s=1.0) == EXIT_THRESHOLD_FAILED
    assert build_report(plan, incomplete=["workers lost"], wall_time_s=1.0) == EXIT_INCOMPLETE


def test_workers_that_missed_heartbeats_and_came_back_leave_the_run_complete(tmp_path) -> None:
    """Every worker went missing once (a stalled host): the run is incomplete only while one
    of them never came back; otherwise it is judged, here as generator-bound."""
    plan = recorded_run(tmp_path, cpu=99.0, thresholds=["ws echo:count>0"])
    metrics = plan.run_dir / "metrics.json"
    data = json.loads(metrics.read_text())
    assert sorted(data["workers"]["seen"]) == ["w1", "w2"]
    data["workers"]["lost"] = [
        {"worker": "w1", "at": 10.0, "back_at": 14.0},
        {"worker": "w2", "at": 11.0, "back_at": 12.5},
    ]
    metrics.write_text(json.dumps(data))
    assert build_report(plan, incomplete=[], wall_time_s=1.0) == EXIT_GENERATOR_BOUND
    del data["workers"]["lost"][1]["back_at"]
    metrics.write_text(json.dumps(data))
    assert build_report(plan, incomplete=[], wall_time_s=1.0) == EXIT_GENERATOR_BOUND
    del data["workers"]["lost"][0]["back_at"]
    metrics.write_text(json.dumps(data))
    assert build_report(plan, incomplete=[], wall_time_s=1.0) == EXIT_INCOMPLETE
    summary = json.loads((plan.run_dir / "summary.json").read_text())
    assert "every worker was lost" in summary["incomplete"]


def test_a_clean_generator_passes_and_its_junit_case_holds(tmp_path, capsys) -> None:
    plan = recorded_run(tmp_path, cpu=20.0, thresholds=["generator:cpu_max<85%"])
    assert build_report(plan, incomplete=[], wall_time_s=1.0) == EXIT_OK
    assert set(junit_cases(plan).values()) == {"ok"} and len(junit_cases(plan)) == 2
    assert "  generator: clean: CPU max 20% of a core" in capsys.readouterr().out


def test_worker_health_points_carry_the_loop_lag_and_the_report_charts_it() -> None:
    sample = health_sample(interval_lag((60.0,)))
    point = health_point("w1", sample, {"run_id": "r"}, 1_000_000_000)
    assert point.fields["loop_lag_p99"] == sample["loop_lag_p99_ms"]
    assert set(point.fields) >= {"loop_lag_p50", "loop_lag_p99", "loop_lag_max", "host_lag_p99"}
    bare = health_point("w1", health_sample(), {"run_id": "r"}, 1_000_000_000)
    assert not any(name.startswith("loop_lag") for name in bare.fields)

    from wirelab.metrics.results import RunResults  # noqa: PLC0415

    chart = next(c for _, cs in CHART_SECTIONS for c in cs if c.title == "Worker loop lag (p99)")
    lines = chart_series(chart, RunResults(run_dir=".", points=[point]))
    assert lines["w1"] == [(0.0, sample["loop_lag_p99_ms"])]
    assert {y for _, y in lines["bound (20 ms)"]} == {20.0}


def test_generator_status_judges_what_the_master_merged_so_far(tmp_path) -> None:
    (tmp_path / "reports.json").write_text(json.dumps([payload(cpu=97.0)] * 3))
    out = run_python(
        tmp_path,
        """
        import json

        from wirelab.metrics.generator import generator_status
        from wirelab.metrics.plugin import PluginConfig, RunMetrics

        assert generator_status() == {}  # no run merged in this process yet
        run = RunMetrics(PluginConfig(run_id="live"))
        run.start()
        for data in json.loads((tmp / "reports.json").read_text()):
            run.on_worker_report("w1", {"wirelab": data})
        print(json.dumps({"status": generator_status(), "latest": run.aggregate.health["w1"]}))
        run.finish()
        """,
    )
    live = json.loads(out)
    assert live["status"]["verdict"] == "generator-bound"
    assert live["status"]["workers"]["w1"]["intervals"] == 3
    assert live["latest"]["cpu_percent"] == 97.0


def test_generator_status_judges_the_record_the_master_watches() -> None:
    watch(record_of(w1=quiet(4)), lambda: ({}, {}))
    assert generator_status()["verdict"] == "clean"
    assert generator_status()["workers"]["w1"]["intervals"] == 4
