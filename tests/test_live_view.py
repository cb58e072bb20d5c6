"""The live view's figures and routes, in a real Locust master's Flask app (no browser).

Worker reports are real :class:`~wirelab.metrics.recorder.Recorder` deltas fired through
Locust's ``worker_report`` event, merged by the real metrics plugin; the routes are the real
Flask app of a real :class:`locust.web.WebUI`, asked through Flask's test client. The browser
tests are in ``test_live_view_browser.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from locust import User, constant, task
from locust.env import Environment
from locust.event import Events
from locust.runners import STATE_MISSING, STATE_RUNNING, WorkerNode

import wirelab.metrics.plugin as metrics_plugin
import wirelab.webauth as webauth
import wirelab.webview.plugin as webview
from wirelab.metrics.histogram import LogHistogram
from wirelab.metrics.recorder import Recorder
from wirelab.processes import free_port
from wirelab.report.summary import histogram_ms
from wirelab.run import RunPlan, run_environment, write_locustfile
from wirelab.scenarios import load_scenario
from wirelab.thresholds import parse_threshold
from wirelab.webview.figures import LiveFigures
from wirelab.webview.settings import THRESHOLDS_ENV, thresholds_from_environment

THRESHOLDS = ["*:error_rate<1%", "ws echo:p99<1us", "sse:lost==0", "grpc:lost==0"]

#: The contract's generator block (CONTRACT-generator.md), as the live status returns it.
GENERATOR = {
    "verdict": "generator-bound",
    "bounds": {"cpu_percent": 85.0, "loop_lag_p99_ms": 20.0},
    "cpu_max": 99.0,
    "loop_lag_p99_ms": 31.0,
    "share_affected": 0.4,
    "distorts": ["delivery lag", "request latency"],
    "reasons": ["w1: CPU above 85% in 40% of intervals (max 99%)"],
    "workers": {"w1": {"cpu_max": 99.0, "bound": True}, "w2": {"cpu_max": 20.0, "bound": False}},
}


class Idle(User):
    wait_time = constant(1)

    @task
    def nothing(self) -> None:
        pass


@pytest.fixture
def master(monkeypatch):
    """A real master Environment with the metrics plugin, the view and the login on its own
    Events; its web UI is built but does not listen (Flask's test client asks it)."""
    for name in ("WIRELAB_REPORT_DIR", "WIRELAB_SINKS", "WIRELAB_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WIRELAB_RUN_ID", "live-test")
    monkeypatch.setenv(THRESHOLDS_ENV, json.dumps(THRESHOLDS))
    monkeypatch.setenv(webauth.USER_ENV, "operator")
    monkeypatch.setenv(webauth.PASSWORD_ENV, "pw-live-123")
    # Locust's web UI reads its options from the command line: give it a clean one.
    monkeypatch.setattr(sys, "argv", ["locust"])
    events = Events()
    metrics_plugin.register(events)
    webview.register(events)
    webauth.register(events)
    environment = Environment(user_classes=[Idle], events=events)
    runner = environment.create_master_runner("127.0.0.1", free_port())

    def start(*, web_login: bool = False) -> Environment:
        web_ui = environment.create_web_ui("127.0.0.1", 0, web_login=web_login, delayed_start=True)
        events.init.fire(environment=environment, runner=runner, web_ui=web_ui)
        events.test_start.fire(environment=environment)
        return environment

    yield start
    runner.quit()


def report(
    environment: Environment, worker: str, recorder: Recorder, health: dict | None = None
) -> None:
    """One worker report, as a worker's plugin sends it, through Locust's event."""
    payload = recorder.take_delta()
    payload["health"] = health or {"cpu_percent": 10.0, "rss_bytes": 50 << 20, "connections": 1}
    environment.events.worker_report.fire(client_id=worker, data={"wirelab": payload})


def live(environment: Environment, since: int = 0) -> dict[str, Any]:
    response = environment.web_ui.app.test_client().get(f"/wirelab/live.json?since={since}")
    assert response.status_code == 200, response.data[:300]
    return response.get_json()


def test_live_figures_are_the_exact_merge_of_every_workers_reports(master):
    environment = master()
    lags: dict[str, list[float]] = {"w1": [800.0, 1200.0, 95_000.0], "w2": [1500.0, 2500.0]}
    latencies = {"w1": [0.002, 0.003], "w2": [0.004, 0.010, 0.020]}
    for worker in ("w1", "w2"):
        recorder = Recorder()
        for seconds in latencies[worker]:
            recorder.request("ws", "ws echo", seconds)
        recorder.request("ws", "ws echo", 0.001, ok=False, error="TimeoutError")
        stream = recorder.stream("ws", "ws deliver")
        stream.connected = 3
        for lag_us in lags[worker]:
            stream.record_event("ok", lag_us)
        stream.record_event("gap", 1000.0)
        stream.missing += 2
        stream.record_event("duplicate", 0.0)
        stream.reconnects += 1
        report(environment, worker, recorder)
    # Locust's own statistics of the same names, shown beside wirelab's.
    environment.runner.stats.log_request("ws", "ws echo", 12, 0)
    environment.runner.stats.log_request("ws", "ws deliver", 3, 0)

    figures = live(environment)

    expected_lag = LogHistogram()
    for value in [*lags["w1"], *lags["w2"], 1000.0, 1000.0]:
        expected_lag.record(value)
    [stream] = figures["streams"]
    assert stream["name"] == "ws deliver"
    assert stream["delivered"] == 7  # five in order, one after each worker's gap
    assert (stream["gaps"], stream["missing"], stream["lost"]) == (2, 4, 4)
    assert (stream["duplicates"], stream["reconnects"], stream["connected"]) == (2, 2, 6)
    exact = histogram_ms(expected_lag)
    assert stream["lag_ms"] == {"p50": exact["p50"], "p99": exact["p99"]}
    assert stream["locust_lag_ms"]["p99"] == 3.0
    expected_latency = LogHistogram()
    for seconds in [*latencies["w1"], *latencies["w2"], 0.001, 0.001]:
        expected_latency.record(seconds * 1e6)
    [request] = figures["requests"]
    assert (request["count"], request["failures"]) == (7, 2)
    assert request["error_rate"] == pytest.approx(2 / 7)
    exact = histogram_ms(expected_latency)
    assert request["latency_ms"] == {key: exact[key] for key in ("p50", "p99", "p999")}
    assert request["locust"]["count"] == 1 and request["locust"]["ms"]["p99"] == 12.0
    assert figures["run"]["reports"] == 2 and figures["run"]["run_id"] == "live-test"


def test_worker_rows_show_loop_lag_and_the_generator_verdict_only_when_reported(master):
    environment = master()
    runner = environment.runner
    runner.clients["w1"] = WorkerNode("w1", state=STATE_RUNNING)
    runner.clients["w2"] = WorkerNode("w2", state=STATE_MISSING)
    with_lag = {
        "cpu_percent": 97.0, "rss_bytes": 80 << 20, "greenlets": 40, "connections": 12,
        "loop_lag_p50_ms": 0.4, "loop_lag_p99_ms": 31.0, "loop_lag_max_ms": 45.0,
    }  # fmt: skip
    report(environment, "w1", Recorder(), with_lag)
    report(environment, "w2", Recorder())  # an older worker: no loop lag in its sample

    without = LiveFigures(environment, [], generator=lambda: None).snapshot()
    rows = {row["id"]: row for row in without["workers"]}
    assert rows["w1"]["loop_lag_p99_ms"] == 31.0 and rows["w1"]["cpu_percent"] == 97.0
    assert rows["w2"]["loop_lag_p99_ms"] is None and rows["w2"]["cpu_percent"] == 10.0
    assert rows["w1"]["bound"] is None and without["generator"] is None
    assert (rows["w1"]["state"], rows["w2"]["state"]) == (STATE_RUNNING, STATE_MISSING)

    bound = LiveFigures(environment, [], generator=lambda: GENERATOR).snapshot()
    rows = {row["id"]: row for row in bound["workers"]}
    assert (rows["w1"]["bound"], rows["w2"]["bound"]) == (True, False)
    assert bound["generator"]["verdict"] == "generator-bound"


def test_thresholds_are_judged_live_one_row_per_expression_in_the_order_written(master):
    environment = master()
    recorder = Recorder()
    for name in ("ws echo", "ws ping", "rest POST /items"):
        recorder.request(name.split()[0], name, 0.002)
    recorder.stream("grpc", "grpc deliver").record_event("ok", 1000.0)
    report(environment, "w1", recorder)

    groups = live(environment)["thresholds"]["groups"]

    assert [group["expression"] for group in groups] == THRESHOLDS
    states = {group["expression"]: group["state"] for group in groups}
    assert states == {
        "*:error_rate<1%": "holding",
        "ws echo:p99<1us": "failing",
        "sse:lost==0": "no data",  # no SSE stream has reported yet
        "grpc:lost==0": "holding",
    }
    every = groups[0]
    assert every["total"] == 3 and every["worst_subject"] == "all 3"
    assert [row["subject"] for row in every["subjects"]] == sorted(
        ["ws echo", "ws ping", "rest POST /items"]
    )
    assert live(environment)["thresholds"]["counts"] == {"holding": 2, "failing": 1, "no data": 1}


def test_annotations_arrive_once_each_when_the_page_asks_since_the_last_one(master):
    environment = master()
    metrics_plugin.current_run(environment.events).add_annotation(
        {"at": 1.0, "time_ns": 1, "kind": "storm", "text": "drop all", "tags": {}}
    )
    first = live(environment)["annotations"]
    assert (first["total"], first["from"]) == (1, 0)
    assert [item["kind"] for item in first["items"]] == ["storm"]
    metrics_plugin.current_run(environment.events).add_annotation(
        {"at": 2.0, "time_ns": 2, "kind": "deploy_start", "text": "sse", "tags": {}}
    )
    second = live(environment, since=1)["annotations"]
    assert (second["total"], second["from"]) == (2, 1)
    assert [item["kind"] for item in second["items"]] == ["deploy_start"]


def test_locusts_own_tabs_carry_the_wirelab_rows_on_its_stats_request(master):
    environment = master()
    recorder = Recorder()
    recorder.request("rest", "rest POST /items", 0.003)
    recorder.stream("sse", "sse deliver").record_event("ok", 2000.0)
    report(environment, "w1", recorder)
    tabs = {tab["key"] for tab in environment.web_ui.template_args["extended_tabs"]}
    assert tabs == {webview.STREAMS_TAB, webview.REQUESTS_TAB}

    stats = environment.web_ui.app.test_client().get("/stats/requests").get_json()

    extended = {entry["key"]: entry["data"] for entry in stats["extended_stats"]}
    assert [row["name"] for row in extended[webview.STREAMS_TAB]] == ["sse deliver"]
    assert extended[webview.STREAMS_TAB][0]["delivered"] == 1
    assert [row["name"] for row in extended[webview.REQUESTS_TAB]] == ["rest POST /items"]
    assert "stats" in stats and "state" in stats  # Locust's own answer is all still there


def test_the_view_requires_the_web_login_when_it_is_on(master):
    environment = master(web_login=True)
    anonymous = environment.web_ui.app.test_client()
    for path in ("/wirelab/", "/wirelab/live.json"):
        response = anonymous.get(path)
        assert response.status_code == 302, path
        assert response.headers["location"].startswith("/login"), path
    wrong = environment.web_ui.app.test_client()
    wrong.post("/wirelab/login", data={"username": "operator", "password": "nope"})
    assert wrong.get("/wirelab/live.json").status_code == 302

    operator = environment.web_ui.app.test_client()
    response = operator.post(
        "/wirelab/login",
        data={"username": "operator", "password": "pw-live-123"},
        headers={"Referer": "http://127.0.0.1/login?next=%2Fwirelab%2F"},
    )
    # Back to the page that asked for the login.
    assert response.status_code == 302 and response.headers["location"] == "/wirelab/"
    page = operator.get("/wirelab/")
    assert page.status_code == 200 and b"wirelab live" in page.data
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert operator.get("/wirelab/live.json").get_json()["run"]["run_id"] == "live-test"


@pytest.mark.parametrize(
    "next_page", ["//evil.example/", "https://evil.example/", "/\\evil.example", "wirelab/"]
)
def test_a_login_never_redirects_off_this_ui(master, next_page):
    environment = master(web_login=True)
    client = environment.web_ui.app.test_client()
    response = client.post(
        "/wirelab/login",
        data={"username": "operator", "password": "pw-live-123"},
        headers={"Referer": f"http://127.0.0.1/login?next={next_page}"},
    )
    assert response.headers["location"] == "/"


def test_the_runs_thresholds_reach_the_master_through_its_environment(tmp_path: Path):
    scenario = load_scenario("smoke")
    extra = parse_threshold("ws echo:p99<50ms")
    plan = RunPlan(scenario=scenario, thresholds=[extra], report_dir=tmp_path)
    env = run_environment(plan, {})
    parsed, errors = thresholds_from_environment(env)
    assert [t.expression for t in parsed] == ["ws echo:p99<50ms"] and errors == []
    # `wirelab up` judges nothing at the end, but its view shows the scenario's thresholds.
    up = RunPlan(scenario=scenario, thresholds=[], report_dir=tmp_path)
    parsed, _ = thresholds_from_environment(run_environment(up, {}))
    assert [t.expression for t in parsed] == scenario.thresholds
    # A bad entry is named, and the rest still count.
    parsed, errors = thresholds_from_environment({THRESHOLDS_ENV: '["ws:lost==0", "x:p98<1ms"]'})
    assert [t.expression for t in parsed] == ["ws:lost==0"]
    assert len(errors) == 1 and "p98" in errors[0]
    assert thresholds_from_environment({THRESHOLDS_ENV: "ws:lost==0"})[1]
    # The generated locustfile loads the view in the master.
    (tmp_path / plan.run_id).mkdir()
    source = write_locustfile(tmp_path / plan.run_id, scenario).read_text()
    assert "import wirelab.webview.plugin" in source
