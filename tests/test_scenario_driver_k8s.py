"""The generated locustfile's ``install(actions)`` on the chart's master pod: with
``WIRELAB_ORCHESTRATOR=kubernetes`` a built-in scenario's actions reach the Kubernetes API.

No real API server can run on these machines (no container engine, no cluster, no kind or
minikube), so the master's orchestrator talks, through a kubeconfig, to the fake API server
of ``tests/test_kubernetes_orchestrator.py``: a real HTTP server on loopback that keeps
Deployments and pods and plays the Deployment controller. The real ``kubernetes`` client,
Locust's event hooks, the scenario driver and the target monitor all run, in a child Python
(importing Locust monkey-patches a process with gevent, which the pytest session must not
be); the locustfile's call is the one ``wirelab run`` writes (``install(<the scenario's
actions>)``, no orchestrator given). ``scripts/cluster-smoke.sh`` exercises a real cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.test_kubernetes_orchestrator import (
    NAMESPACE,
    RESTARTED_AT,
    RecordingAdmin,
    chart_labels,
    fake_api_server,
)

ADMIN_TOKEN = "master-admin-token-for-tests-only"

#: The fake Kubernetes API server on a loopback port: (its state, its URL).
api_server = pytest.fixture(name="api")(fake_api_server)


@pytest.fixture
def master_env(api, tmp_path: Path) -> dict[str, str]:
    """The environment of the chart's master pod of release ``soak`` (what
    ``wirelab.orchestratorEnv`` sets), with credentials from a kubeconfig for the fake API."""
    _, url = api
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "users": [{"name": "master", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "master"}}],
                "current-context": "fake",
            }
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WIRELAB_", "LOCUST_", "KUBERNETES_"))
    }
    return {
        **env,
        "HOME": str(tmp_path),
        "KUBECONFIG": str(kubeconfig),
        "WIRELAB_ORCHESTRATOR": "kubernetes",
        "WIRELAB_K8S_NAMESPACE": NAMESPACE,
        "WIRELAB_K8S_INSTANCE": "soak",
        "WIRELAB_K8S_NAME_PREFIX": "soak-wirelab-",
        "WIRELAB_K8S_SERVICES": "rest,sse,ws,grpc",
        "WIRELAB_ADMIN_TOKEN": ADMIN_TOKEN,
    }


#: The master's side, in a child Python: what the generated locustfile does, then Locust's
#: init and test start on a master, until every action has finished. Every action is moved to
#: ``at: 0`` (what it does and to which service is the built-in scenario's own). The metrics
#: plugin's annotations and target points are recorded instead of written, and the fake
#: controller, which moves a rollout one step per GET, is polled quickly: only the interval
#: of the orchestrator the environment describes changes.
MASTER = """
import json, sys
from locust.event import Events  # first: Locust patches this process with gevent

import wirelab.metrics.plugin as plugin
import wirelab.scenarios.driver as driver
from wirelab.lab.kubernetes import KubernetesOrchestrator
from wirelab.scenarios import load_scenario

notes, replicas, drivers = [], set(), []
plugin.annotate = lambda kind, text, **tags: notes.append([kind, text, tags]) or {}
plugin.write_points = lambda points: replicas.update(
    p.tags["replica"] for p in points if p.measurement == "targets"
) or True
from_environment = KubernetesOrchestrator.from_environment.__func__

def quick(cls, env=None):
    orchestrator = from_environment(cls, env)
    orchestrator.poll_interval = 0.01
    return orchestrator

KubernetesOrchestrator.from_environment = classmethod(quick)
start = driver.ScenarioDriver.start
driver.ScenarioDriver.start = lambda self: (drivers.append(self), start(self))[1]

actions = [{**a.to_dict(), "at": 0} for a in load_scenario(sys.argv[1]).actions]
events = Events()
driver.install(json.dumps(actions), events=events)
events.init.fire(environment=object(), runner=object())  # a master, not a WorkerRunner
events.test_start.fire(environment=object())
for each in drivers:
    each.join(timeout=60)
events.test_stop.fire(environment=object())
results = [r for each in drivers for r in each.results]
print(json.dumps({"notes": notes, "results": results, "replicas": sorted(replicas)}))
"""


def run_on_the_master(scenario: str, env: dict[str, str]) -> dict[str, Any]:
    """The child's notes (kind, text, tags), action results and monitored replicas."""
    result = subprocess.run(
        [sys.executable, "-c", MASTER, scenario],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def kinds(master: dict[str, Any]) -> list[str]:
    return [kind for kind, _, _ in master["notes"]]


def test_rolling_deploy_on_the_chart_master_patches_every_target_deployment(api, master_env):
    cluster, _ = api
    deployments = {
        service: cluster.add_deployment(f"soak-wirelab-{service}", chart_labels(service), 2)
        for service in ("rest", "sse", "ws", "grpc")
    }
    old = {service: set(d.current) for service, d in deployments.items()}

    master = run_on_the_master("rolling-deploy", master_env)

    assert "action_error" not in kinds(master), master["notes"]
    assert [(r["action"], r["service"], r["ok"]) for r in master["results"]] == [
        ("rolling_restart", "all", True)
    ]
    # kubectl rollout restart's patch, sent to every target's Deployment (service: all).
    patches = cluster.of("PATCH")
    assert sorted(p.path.rsplit("/", 1)[1] for p in patches) == [
        "soak-wirelab-grpc",
        "soak-wirelab-rest",
        "soak-wirelab-sse",
        "soak-wirelab-ws",
    ]
    for patch in patches:
        assert patch.content_type == "application/strategic-merge-patch+json"
        assert RESTARTED_AT in patch.body["spec"]["template"]["metadata"]["annotations"]
    for service, deployment in deployments.items():
        assert len(deployment.current) == 2 and not deployment.old
        assert not set(deployment.current) & old[service], f"{service} was not replaced"
    assert kinds(master).index("deploy_start") < kinds(master).index("deploy_end")
    (end,) = [text for kind, text, _ in master["notes"] if kind == "deploy_end"]
    assert "deployment soak-wirelab-ws: 2 replicas replaced" in end
    # The target monitor ran on replicas(): the pods the fake API listed.
    assert set(master["replicas"]) & {pod for d in deployments.values() for pod in d.current}


def test_reconnect_storm_on_the_chart_master_drops_every_ready_pod_with_the_admin_token(
    api, master_env
):
    cluster, _ = api
    admins = {name: RecordingAdmin() for name in ("soak-wirelab-ws-a", "soak-wirelab-sse-a")}
    try:
        for name, admin in admins.items():
            service = name.split("-")[2]
            cluster.add_pod(name, chart_labels(service), ip="127.0.0.1", admin_port=admin.port)

        master = run_on_the_master("reconnect-storm", master_env)
    finally:
        for admin in admins.values():
            admin.close()

    assert "action_error" not in kinds(master), master["notes"]
    assert "storm" in kinds(master)
    (result,) = master["results"]
    assert (result["action"], result["service"], result["ok"]) == ("drop_connections", "all", True)
    assert result["detail"] == "cut 6 connections on 2 pods"
    for admin in admins.values():
        assert admin.requests == [("POST", "/admin/drop", f"Bearer {ADMIN_TOKEN}")]
    assert set(master["replicas"]) == set(admins)


def test_without_kubernetes_credentials_the_actions_fail_on_the_timeline_not_silently(
    api, master_env, tmp_path: Path
):
    cluster, _ = api
    master_env["KUBECONFIG"] = str(tmp_path / "missing")  # and no ~/.kube/config in HOME

    master = run_on_the_master("rolling-deploy", master_env)

    (error,) = [text for kind, text, _ in master["notes"] if kind == "action_error"]
    assert "rolling_restart all" in error
    assert "the Kubernetes orchestrator cannot start: no Kubernetes credentials" in error
    assert [r["ok"] for r in master["results"]] == [False]
    assert master["replicas"] == []  # no monitor without an orchestrator
    assert not cluster.requests


def test_an_unknown_orchestrator_name_fails_the_actions_with_what_is_expected(api, master_env):
    master_env["WIRELAB_ORCHESTRATOR"] = "nomad"

    master = run_on_the_master("reconnect-storm", master_env)

    (error,) = [text for kind, text, _ in master["notes"] if kind == "action_error"]
    assert "WIRELAB_ORCHESTRATOR='nomad': expected local or kubernetes" in error
