"""KubernetesOrchestrator against a fake Kubernetes API server, at the HTTP boundary.

No real API server can run on these machines (no container engine, no cluster, no kind or
minikube), so the orchestrator talks to a real HTTP server on loopback that speaks the part
of the Kubernetes REST API the chart's Role allows: GET and PATCH a Deployment, LIST pods by
label selector, DELETE a pod. It keeps Deployments and pods as JSON and plays the Deployment
controller: every GET of a Deployment moves a rollout or a scale one step on (or not at all,
for a stuck rollout). The real ``kubernetes`` client, its serialisation and urllib3 all run;
only the cluster is simulated. ``scripts/cluster-smoke.sh`` exercises the real thing.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client

from wirelab.lab.kubernetes import (
    RESTARTED_AT,
    KubernetesOrchestrator,
    chart_deployment_name,
    chart_label_selector,
)
from wirelab.lab.orchestrator import Orchestrator, OrchestratorError

NAMESPACE = "lab"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any


@dataclass
class FakeDeployment:
    name: str
    labels: dict[str, str]
    replicas: int
    generation: int = 1
    observed: int = 1
    template_annotations: dict[str, str] = field(default_factory=dict)
    #: Pods of the current template (updated) and of older ones.
    current: list[str] = field(default_factory=list)
    old: list[str] = field(default_factory=list)
    #: A stuck rollout: the surge pod never becomes available.
    stuck: bool = False
    deadline_exceeded: bool = False


class FakeCluster:
    """Deployments and pods of one namespace, and a log of every request."""

    def __init__(self) -> None:
        self.deployments: dict[str, FakeDeployment] = {}
        self.pods: dict[str, dict[str, str]] = {}  # name -> labels
        self.requests: list[Request] = []
        self.forbidden: set[tuple[str, str]] = set()  # (method, path prefix)
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    def add_deployment(self, name: str, labels: dict[str, str], replicas: int) -> FakeDeployment:
        deployment = FakeDeployment(name, labels, replicas)
        self.deployments[name] = deployment
        for _ in range(replicas):
            deployment.current.append(self._new_pod(deployment))
        return deployment

    def add_pod(self, name: str, labels: dict[str, str]) -> None:
        self.pods[name] = labels

    def _new_pod(self, deployment: FakeDeployment) -> str:
        name = f"{deployment.name}-{next(self._ids):04d}"
        self.pods[name] = dict(deployment.labels)
        return name

    # -- the Deployment controller, one step per GET ---------------------------------------

    def step(self, d: FakeDeployment) -> None:
        if d.observed < d.generation:
            d.observed = d.generation
            return
        if d.stuck or d.deadline_exceeded:
            if d.stuck and not any(p for p in d.current if p in self.pods) and d.old:
                d.current.append(self._new_pod(d))  # the surge pod, never available
            return
        if d.old:  # rolling: surge one new pod, retire one old one
            d.current.append(self._new_pod(d))
            self.pods.pop(d.old.pop(0), None)
        elif len(d.current) < d.replicas:
            d.current.append(self._new_pod(d))
        elif len(d.current) > d.replicas:
            self.pods.pop(d.current.pop(), None)

    def deployment_json(self, d: FakeDeployment) -> dict[str, Any]:
        updated = len(d.current)
        total = updated + len(d.old)
        available = total - (1 if d.stuck and d.current else 0)
        conditions = []
        if d.deadline_exceeded:
            conditions.append(
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{d.name}-2" has timed out progressing.',
                }
            )
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": d.name, "namespace": NAMESPACE, "generation": d.generation},
            "spec": {
                "replicas": d.replicas,
                "selector": {"matchLabels": d.labels},
                "template": {
                    "metadata": {"labels": d.labels, "annotations": d.template_annotations},
                    "spec": {"containers": [{"name": "target", "image": "wirelab"}]},
                },
            },
            "status": {
                "observedGeneration": d.observed,
                "replicas": total,
                "updatedReplicas": updated,
                "readyReplicas": available,
                "availableReplicas": available,
                "conditions": conditions,
            },
        }

    def pod_json(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": self.pods[name]},
            "spec": {"containers": [{"name": "target", "image": "wirelab"}]},
            "status": {"phase": "Running"},
        }

    def of(self, method: str, path_part: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == method and path_part in r.path]


def _matches(labels: dict[str, str], selector: str) -> bool:
    wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
    return all(labels.get(k) == v for k, v in wanted.items())


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


def _handler(cluster: FakeCluster) -> type[BaseHTTPRequestHandler]:
    deployments = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/"
    pods = f"/api/v1/namespaces/{NAMESPACE}/pods"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, code: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Request(
                self.command,
                parts.path,
                parse_qs(parts.query),
                self.headers.get("Content-Type", ""),
                json.loads(raw) if raw else None,
            )
            with cluster.lock:
                cluster.requests.append(request)
                for method, prefix in cluster.forbidden:
                    if method == self.command and parts.path.startswith(prefix):
                        self._reply(403, _status(403, "Forbidden", "pods is forbidden"))
                        return
                code, payload = self._route(request)
            self._reply(code, payload)

        def _route(self, r: Request) -> tuple[int, dict[str, Any]]:
            if r.path.startswith(deployments):
                d = cluster.deployments.get(r.path.removeprefix(deployments))
                if d is None:
                    return 404, _status(404, "NotFound", "deployments.apps not found")
                if r.method == "GET":
                    cluster.step(d)
                    return 200, cluster.deployment_json(d)
                if r.method == "PATCH":
                    spec = (r.body or {}).get("spec", {})
                    annotations = spec.get("template", {}).get("metadata", {}).get("annotations")
                    if annotations:
                        d.template_annotations.update(annotations)
                        d.old, d.current = d.old + d.current, []
                        d.generation += 1
                    if "replicas" in spec:
                        d.replicas = spec["replicas"]
                        d.generation += 1
                    return 200, cluster.deployment_json(d)
            if r.path == pods and r.method == "GET":
                selector = r.query.get("labelSelector", [""])[0]
                items = [
                    cluster.pod_json(n) for n, lb in cluster.pods.items() if _matches(lb, selector)
                ]
                return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
            if r.path.startswith(pods + "/") and r.method == "DELETE":
                name = r.path.removeprefix(pods + "/")
                if name not in cluster.pods:
                    return 404, _status(404, "NotFound", f'pods "{name}" not found')
                payload = cluster.pod_json(name)
                del cluster.pods[name]
                for d in cluster.deployments.values():
                    for group in (d.current, d.old):
                        if name in group:
                            group.remove(name)
                return 200, payload
            return 404, _status(404, "NotFound", f"fake API server: no route {r.method} {r.path}")

        def do_GET(self) -> None:
            self._handle()

        def do_PATCH(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

    return Handler


@pytest.fixture
def cluster() -> Iterator[tuple[FakeCluster, str]]:
    """A fake API server on a loopback port: (its state, its URL)."""
    state = FakeCluster()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def chart_labels(component: str, instance: str = "soak") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "wirelab",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
    }


def orchestrator_for(url: str) -> KubernetesOrchestrator:
    return KubernetesOrchestrator(
        NAMESPACE,
        api_client=client.ApiClient(client.Configuration(host=url)),
        label_selector_for=chart_label_selector("soak"),
        deployment_name_for=chart_deployment_name("soak-wirelab-"),
        poll_interval=0.01,
    )


def test_it_implements_the_orchestrator_protocol(cluster):
    _, url = cluster
    assert isinstance(orchestrator_for(url), Orchestrator)


def test_rolling_restart_sends_kubectls_restarted_at_patch_and_watches_the_rollout(cluster):
    state, url = cluster
    ws = state.add_deployment("soak-wirelab-ws", chart_labels("ws"), replicas=3)
    old_pods = list(ws.current)

    result = orchestrator_for(url).rolling_restart("ws", timeout=10)

    (patch,) = state.of("PATCH")
    assert patch.path == f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/soak-wirelab-ws"
    assert patch.content_type == "application/strategic-merge-patch+json"
    stamp = patch.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert patch.body == {
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
    }
    sent_at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(sent_at.timestamp() - time.time()) < 5
    # Watched until the controller saw the new generation and replaced every replica.
    assert len(state.of("GET", "/deployments/")) >= 4
    assert not ws.old
    assert len(ws.current) == 3
    assert not set(ws.current) & set(old_pods)
    assert result.action == "rolling_restart"
    assert result.service == "ws"
    assert result.affected == sorted(old_pods)
    assert result.ended_at >= result.started_at


def test_a_stuck_rollout_times_out_with_an_orchestrator_error(cluster):
    state, url = cluster
    grpc = state.add_deployment("soak-wirelab-grpc", chart_labels("grpc"), replicas=3)
    grpc.stuck = True

    started = time.monotonic()
    with pytest.raises(OrchestratorError) as error:
        orchestrator_for(url).rolling_restart("grpc", timeout=0.3)

    assert time.monotonic() - started < 5
    assert "rolling restart of grpc did not complete in 0.3s" in str(error.value)
    assert str(error.value).endswith(": 1 of 3 replicas updated")


def test_a_rollout_past_its_progress_deadline_fails_without_waiting_for_the_timeout(cluster):
    state, url = cluster
    sse = state.add_deployment("soak-wirelab-sse", chart_labels("sse"), replicas=2)
    sse.deadline_exceeded = True

    started = time.monotonic()
    with pytest.raises(OrchestratorError, match="exceeded its progress deadline"):
        orchestrator_for(url).rolling_restart("sse", timeout=60)
    assert time.monotonic() - started < 5


def test_kill_deletes_only_pods_that_match_the_services_label_selector(cluster):
    state, url = cluster
    ws = state.add_deployment("soak-wirelab-ws", chart_labels("ws"), replicas=3)
    state.add_deployment("soak-wirelab-sse", chart_labels("sse"), replicas=2)
    # Same component in another release, and an unrelated pod: never touched.
    state.add_pod("other-wirelab-ws-1", chart_labels("ws", instance="other"))
    state.add_pod("unrelated", {"app": "ws"})
    bystanders = {name for name in state.pods if name not in ws.current}

    result = orchestrator_for(url).kill("ws", 2)

    (listing,) = state.of("GET", "/pods")
    assert listing.query["labelSelector"] == [
        "app.kubernetes.io/name=wirelab,app.kubernetes.io/instance=soak,"
        "app.kubernetes.io/component=ws"
    ]
    deletes = state.of("DELETE")
    assert len(deletes) == 2
    deleted = {r.path.rsplit("/", 1)[1] for r in deletes}
    assert deleted == set(result.affected)
    assert all(name.startswith("soak-wirelab-ws-") for name in deleted)
    assert bystanders <= set(state.pods)
    for request in deletes:  # a crash: no grace period, in the query and the body
        assert request.query["gracePeriodSeconds"] == ["0"]
        assert request.body["gracePeriodSeconds"] == 0


def test_kill_refuses_to_kill_more_pods_than_are_running(cluster):
    state, url = cluster
    state.add_deployment("soak-wirelab-rest", chart_labels("rest"), replicas=2)

    with pytest.raises(OrchestratorError, match="asked for 3 pods, only 2 running"):
        orchestrator_for(url).kill("rest", 3)
    assert not state.of("DELETE")


def test_scale_patches_the_replicas_and_waits_until_they_are_ready(cluster):
    state, url = cluster
    rest = state.add_deployment("soak-wirelab-rest", chart_labels("rest"), replicas=2)

    result = orchestrator_for(url).scale("rest", 4, timeout=10)

    (patch,) = state.of("PATCH")
    assert patch.body == {"spec": {"replicas": 4}}
    assert patch.content_type == "application/strategic-merge-patch+json"
    assert len(rest.current) == 4
    assert len(result.affected) == 2  # the two new replicas


def test_wait_ready_times_out_when_replicas_never_become_available(cluster):
    state, url = cluster
    ws = state.add_deployment("soak-wirelab-ws", chart_labels("ws"), replicas=2)
    ws.stuck = True
    ws.old, ws.current = ws.current, []
    ws.generation += 1

    with pytest.raises(OrchestratorError, match="waiting for ws to be ready did not complete"):
        orchestrator_for(url).wait_ready("ws", timeout=0.2)


def test_drop_connections_is_refused_with_the_reason(cluster):
    _, url = cluster
    with pytest.raises(OrchestratorError, match=r"not supported on Kubernetes.*use kill"):
        orchestrator_for(url).drop_connections("ws")


def test_a_forbidden_call_names_the_role(cluster):
    state, url = cluster
    state.add_deployment("soak-wirelab-ws", chart_labels("ws"), replicas=2)
    state.forbidden.add(("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods"))

    with pytest.raises(OrchestratorError, match=r"HTTP 403 .*Role does not allow it"):
        orchestrator_for(url).kill("ws", 1)


def test_a_missing_deployment_is_a_one_line_error(cluster):
    _, url = cluster
    with pytest.raises(OrchestratorError, match=r"get deployment soak-wirelab-ws: HTTP 404"):
        orchestrator_for(url).wait_ready("ws", timeout=1)


def test_an_unreachable_api_server_is_an_orchestrator_error():
    closed = KubernetesOrchestrator(
        NAMESPACE,
        api_client=client.ApiClient(client.Configuration(host="http://127.0.0.1:9")),
        request_timeout=2,
    )
    with pytest.raises(OrchestratorError, match="Kubernetes API unreachable"):
        closed.kill("ws", 1)


def test_from_environment_reads_the_release_and_a_kubeconfig(cluster, tmp_path: Path, monkeypatch):
    state, url = cluster
    state.add_deployment("soak-wirelab-ws", chart_labels("ws"), replicas=2)
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "users": [{"name": "me", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                "current-context": "fake",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    orchestrator = KubernetesOrchestrator.from_environment(
        {
            "WIRELAB_K8S_NAMESPACE": NAMESPACE,
            "WIRELAB_K8S_INSTANCE": "soak",
            "WIRELAB_K8S_NAME_PREFIX": "soak-wirelab-",
        }
    )
    orchestrator.poll_interval = 0.01
    orchestrator.wait_ready("ws", timeout=5)

    assert state.of("GET", "/deployments/soak-wirelab-ws")


def test_every_call_the_orchestrator_makes_is_allowed_by_the_charts_role(cluster):
    """The Role the chart renders for release "soak" allows exactly what the actions use."""
    from tests.k8s_tools import helm_template  # noqa: PLC0415 - needs the helm binary

    state, url = cluster
    for service in ("rest", "ws"):
        state.add_deployment(f"soak-wirelab-{service}", chart_labels(service), replicas=2)
    lab = orchestrator_for(url)
    lab.rolling_restart("ws", timeout=10)
    lab.kill("ws", 1)
    lab.scale("rest", 3, timeout=10)
    lab.wait_ready("rest", timeout=10)

    (role,) = [o for o in helm_template(release="soak") if o["kind"] == "Role"]
    verbs = {"GET": "get", "PATCH": "patch", "DELETE": "delete"}
    for request in state.requests:
        parts = request.path.strip("/").split("/")
        group = "apps" if parts[0] == "apis" else ""
        resource, name = (parts[-1], None) if parts[-1] == "pods" else (parts[-2], parts[-1])
        verb = "list" if name is None else verbs[request.method]
        allowed = [
            rule
            for rule in role["rules"]
            if group in rule["apiGroups"]
            and resource in rule["resources"]
            and verb in rule["verbs"]
            and (name is None or "resourceNames" not in rule or name in rule["resourceNames"])
        ]
        assert allowed, f"{request.method} {request.path} is not allowed by the Role"
    assert {r.method for r in state.requests} == {"GET", "PATCH", "DELETE"}
