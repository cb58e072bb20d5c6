"""The chart's lab mode, run for real: the web UI behind its login, workers, a test and its report.

The master Deployment (``wirelab cluster ui``), the worker Deployment, Redis and the targets
run as containers from ``helm template`` output (tests/kubelet.py; no Kubernetes API server
here). The test is the operator: it reads the login from the chart's generated Secret, as
NOTES.txt tells people to, and drives Locust's own HTTP API at the master pod's address. The
test it starts gets its report (summary.json, report.html) while the pod is still up.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import httpx
import pytest

from tests.container_engine import Engine
from tests.fixtures import wait_until
from tests.fixtures.containers import LIGHT, Images, start_targets
from tests.k8s_tools import helm_template
from tests.kubelet import Kubelet

pytestmark = pytest.mark.timeout(900)  # the first test may wait for the session's images

WEB_SECRET, WEB_KEY, WEB_USER = "wirelab-web", "web-password", "admin"


def test_lab_mode_ui_wants_the_login_workers_connect_and_a_test_gets_its_report_at_once(
    engine: Engine, images: Images, tmp_path: Path
) -> None:
    values = {**LIGHT, "mode": "lab", "run.protocols": ["rest", "ws"]}
    harness = Kubelet(engine, helm_template(values), tmp_path)
    try:
        start_targets(harness, ("wirelab-rest", "wirelab-ws"))
        (master,) = harness.run("Deployment", "wirelab-master")
        harness.wait_ready([master], timeout=90)
        workers = harness.run("Deployment", "wirelab-worker")
        harness.wait_ready(workers, timeout=90)
        base = f"http://{master.ip}:8089"

        with httpx.Client(base_url=base, timeout=5, follow_redirects=False) as anonymous:
            for method, path in (("GET", "/"), ("GET", "/stats/requests"), ("POST", "/swarm")):
                response = anonymous.request(method, path)
                assert response.status_code in (302, 401), (method, path)
                if response.status_code == 302:
                    assert urllib.parse.urlsplit(response.headers["location"]).path == "/login"

        password = harness.secret_value(WEB_SECRET, WEB_KEY)
        with httpx.Client(base_url=base, timeout=10, follow_redirects=False) as operator:
            answer = operator.post(
                "/wirelab/login", data={"username": WEB_USER, "password": password}
            )
            assert answer.status_code == 302
            assert urllib.parse.urlsplit(answer.headers["location"]).path == "/"

            def stats() -> dict:
                return operator.get("/stats/requests").json()

            assert stats()["workers"], "the worker pod is ready, so it is connected"
            assert len(stats()["workers"]) == len(workers)
            answer = operator.post(
                "/swarm", data={"user_count": 4, "spawn_rate": 4, "run_time": "8s"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["success"], answer.text
            assert wait_until(lambda: stats()["state"] == "running", 30), stats()["state"]
            assert wait_until(lambda: stats()["state"] == "stopped", 60), stats()["state"]
            requests = sum(row["num_requests"] for row in stats()["stats"])
            assert requests > 0

        # The test has its own run directory and report while the pod is still up (a
        # reports PVC keeps them), and the UI outlives it, ready for the next one.
        reports = master.directory / "volumes" / "reports"
        reported = wait_until(lambda: list(reports.glob("*/*/summary.json")), 60)
        assert reported, harness.logs(master)[-3000:]
        assert harness.ready(master)
        (summary_path,) = reports.glob("*/*/summary.json")
        test_dir = summary_path.parent
        written = {path.name for path in test_dir.iterdir()}
        assert {"metrics.json", "timeseries.lp", "junit.xml", "report.html"} <= written, written
        summary = json.loads(summary_path.read_text())
        assert summary["run_id"] == test_dir.name and summary["thresholds"], summary
        assert sum(row["count"] for row in summary["requests"]) > 0, summary["requests"]
        assert f"wirelab: test {test_dir.name} " in harness.logs(master)

        # Deleting the pod stops Locust through the supervising role: a clean exit.
        harness.stop(master)
        assert harness.inspect(master)["State"]["ExitCode"] == 0, harness.logs(master)[-3000:]
    finally:
        harness.close()
