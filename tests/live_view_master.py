"""The live view's cases that need a real Locust master in the process: run by
``tests/test_live_view.py`` in a fresh Python (``python -m tests.live_view_master CASE``),
since Locust patches the interpreter it is imported into with gevent, and the pytest process
must stay unpatched.

Worker reports are real :class:`~wirelab.metrics.recorder.Recorder` deltas fired through
Locust's ``worker_report`` event, merged by the real metrics plugin; the routes are the real
Flask app of a real :class:`locust.web.WebUI`, asked through Flask's test client.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from locust import User, constant, task
from locust.env import Environment
from locust.event import Events
from locust.runners import STATE_MISSING, STATE_RUNNING, WorkerNode
from locust.stats import RequestStats

import wirelab.metrics.plugin as metrics_plugin
import wirelab.webauth as webauth
import wirelab.webview.plugin as webview
from wirelab.metrics.histogram import LogHistogram
from wirelab.metrics.recorder import Recorder
from wirelab.processes import free_port
from wirelab.report.summary import histogram_ms
from wirelab.webview.figures import LiveFigures
from wirelab.webview.settings import THRESHOLDS_ENV

THRESHOLDS = ["*:error_rate<1%", "ws echo:p99<1us", "sse:lost==0", "grpc:lost==0"]

#: The generator's block of summary.json, as its live status returns it.
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


@contextmanager
def master(*, web_login: bool = False) -> Iterator[Environment]:
    """A real master Environment with the metrics plugin, the view and the login on its own
    Events; its web UI is built but does not listen (Flask's test client asks it). A test
    has started: with a web UI, its run is the test's (run id ``live-test-<time>-1``)."""
    os.environ.update(
        {
            "WIRELAB_RUN_ID": "live-lab",
            "WIRELAB_SCENARIO": "live-test",
            THRESHOLDS_ENV: json.dumps(THRESHOLDS),
            webauth.USER_ENV: "operator",
            webauth.PASSWORD_ENV: "pw-live-123",
        }
    )
    # Locust's web UI reads its options from the command line: give it a clean one.
    sys.argv = ["locust"]
    events = Events()
    metrics_plugin.register(events)
    webview.register(events)
    webauth.register(events)
    environment = Environment(user_classes=[Idle], events=events)
    runner = environment.create_master_runner("127.0.0.1", free_port())
    try:
        web_ui = environment.create_web_ui("127.0.0.1", 0, web_login=web_login, delayed_start=True)
        events.init.fire(environment=environment, runner=runner, web_ui=web_ui)
        events.test_start.fire(environment=environment)
        yield environment
    finally:
        runner.quit()


def is_first_test(run_id: str) -> bool:
    """The run id of the web UI's first test of scenario ``live-test``."""
    return run_id.startswith("live-test-") and run_id.endswith("-1")


def report(
    environment: Environment, worker: str, recorder: Recorder, health: dict | None = None
) -> None:
    """One worker report through Locust's event: Locust's own part (no requests of its own
    here) and wirelab's, as a worker's plugin sends it."""
    payload = recorder.take_delta()
    payload["health"] = health or {"cpu_percent": 10.0, "rss_bytes": 50 << 20, "connections": 1}
    data = {
        "stats": [],
        "stats_total": RequestStats().total.get_stripped_report(),
        "errors": {},
        "user_classes_count": {},
        "wirelab": payload,
    }
    environment.events.worker_report.fire(client_id=worker, data=data)


def live(environment: Environment, since: int = 0) -> dict[str, Any]:
    response = environment.web_ui.app.test_client().get(f"/wirelab/live.json?since={since}")
    assert response.status_code == 200, response.data[:300]
    return response.get_json()


def exact_merge() -> None:
    with master() as environment:
        _exact_merge(environment)


def _exact_merge(environment: Environment) -> None:
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
    assert figures["run"]["reports"] == 2 and is_first_test(figures["run"]["run_id"])


def worker_rows() -> None:
    with master() as environment:
        _worker_rows(environment)


def _worker_rows(environment: Environment) -> None:
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


def thresholds_live() -> None:
    with master() as environment:
        _thresholds_live(environment)


def _thresholds_live(environment: Environment) -> None:
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


def annotations_since() -> None:
    with master() as environment:
        _annotations_since(environment)


def _annotations_since(environment: Environment) -> None:
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


def locust_tabs() -> None:
    with master() as environment:
        _locust_tabs(environment)


def _locust_tabs(environment: Environment) -> None:
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


def login_required() -> None:
    with master(web_login=True) as environment:
        _login_required(environment)


def _login_required(environment: Environment) -> None:
    anonymous = environment.web_ui.app.test_client()
    for path in ("/wirelab/", "/wirelab/live.json", "/wirelab/reports/t-1/report.html"):
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
    assert is_first_test(operator.get("/wirelab/live.json").get_json()["run"]["run_id"])


def login_stays_on_this_ui() -> None:
    with master(web_login=True) as environment:
        for next_page in (
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "wirelab/",
        ):
            client = environment.web_ui.app.test_client()
            response = client.post(
                "/wirelab/login",
                data={"username": "operator", "password": "pw-live-123"},
                headers={"Referer": f"http://127.0.0.1/login?next={next_page}"},
            )
            assert response.headers["location"] == "/", next_page


CASES = {
    case.__name__: case
    for case in (
        exact_merge,
        worker_rows,
        thresholds_live,
        annotations_since,
        locust_tabs,
        login_required,
        login_stays_on_this_ui,
    )
}

if __name__ == "__main__":
    name = sys.argv[1]
    CASES[name]()
    print("ok", name)
