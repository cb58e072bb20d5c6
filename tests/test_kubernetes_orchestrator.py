"""KubernetesOrchestrator against a fake Kubernetes API server, at the HTTP boundary.

No real API server can run on these machines (no container engine, no cluster, no kind or
minikube), so the orchestrator talks to a real HTTP server on loopback that speaks the part
of the Kubernetes REST API the chart's Role allows: GET and PATCH a Deployment, LIST pods by
label selector, DELETE a pod. It keeps Deployments and pods as JSON and plays the Deployment
controller: every GET of a Deployment moves a rollout or a scale one step on (or not at all,
for a stuck rollout). The real ``kubernetes`` client, its serialisation and urllib3 all run;
only the cluster is simulated. ``scripts/cluster-smoke.sh`` exercises the real thing.

The fake can also misbehave the way a real API server does under load or while it restarts
(:meth:`FakeCluster.fail`): answer 429 with ``Retry-After``, 503, or reset the connection.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlsplit
from urllib.request import Request as UrlRequest
from urllib.request import urlopen

import pytest
import urllib3
from kubernetes import client

from tests.test_bad_input_corpus import LAST_CLOSED_BY_SERVER, read_until_closed
from wirelab.lab.kubernetes import (
    RESTARTED_AT,
    KubernetesOrchestrator,
    chart_deployment_name,
    chart_label_selector,
)
from wirelab.lab.kubernetes_retry import RetryPolicy, TransientApiError, retry_after
from wirelab.lab.monitor import TargetMonitor
from wirelab.lab.orchestrator import Orchestrator, OrchestratorError
from wirelab.processes import free_port

NAMESPACE = "lab"
#: Quick retries, so that a test of a failure takes milliseconds; the cap leaves room for
#: the Retry-After of the 429 tests (a hint is honoured up to the cap).
FAST_RETRY = RetryPolicy(attempts=4, base=0.01, cap=5.0)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any
    #: When it arrived (monotonic): retries are checked against Retry-After with it.
    at: float = field(default_factory=time.monotonic)
    #: The fault it met instead of an answer (see FakeCluster.fail), if any.
    fault: str | None = None


@dataclass
class Fault:
    """What the fake API does instead of answering: an HTTP status (a Kubernetes Status
    body, ``Retry-After`` if given), ``"reset"`` (the connection reset before the request
    is processed) or ``"reset_after"`` (processed, then reset instead of the answer)."""

    method: str
    path_part: str
    kind: int | str
    times: int
    retry_after: str | None = None
    #: Matching requests let through before the first one fails.
    skip: int = 0

    def hits(self, method: str, path: str) -> bool:
        """Whether this request meets the fault (and counts it)."""
        if self.times <= 0 or method != self.method or self.path_part not in path:
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        self.times -= 1
        return True


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
        #: name -> what a pod's JSON says beyond its labels (see :meth:`add_pod`).
        self.pod_details: dict[str, dict[str, Any]] = {}
        self.requests: list[Request] = []
        self.forbidden: set[tuple[str, str]] = set()  # (method, path prefix)
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    def fail(
        self,
        method: str,
        path_part: str,
        kind: int | str,
        *,
        times: int = 1,
        retry_after: str | None = None,
        skip: int = 0,
    ) -> Fault:
        """The next ``times`` ``method`` requests whose path holds ``path_part`` (after
        ``skip`` of them went through) fail so."""
        fault = Fault(method, path_part, kind, times, retry_after, skip)
        self.faults.append(fault)
        return fault

    def add_deployment(self, name: str, labels: dict[str, str], replicas: int) -> FakeDeployment:
        deployment = FakeDeployment(name, labels, replicas)
        self.deployments[name] = deployment
        for _ in range(replicas):
            deployment.current.append(self._new_pod(deployment))
        return deployment

    def add_pod(
        self,
        name: str,
        labels: dict[str, str],
        *,
        ip: str | None = None,
        admin_port: int | None = None,
        ready: bool = True,
        phase: str = "Running",
        restarts: int = 0,
        deleting: bool = False,
    ) -> None:
        """A pod; with ``ip`` and ``admin_port``, one whose admin port the tests serve."""
        self.pods[name] = labels
        self.pod_details[name] = {
            "ip": ip,
            "admin_port": admin_port,
            "ready": ready,
            "phase": phase,
            "restarts": restarts,
            "deleting": deleting,
        }

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
        details = self.pod_details.get(name, {})
        container: dict[str, Any] = {"name": "target", "image": "wirelab"}
        if details.get("admin_port"):
            container["ports"] = [
                {"name": "http", "containerPort": 8081, "protocol": "TCP"},
                {"name": "admin", "containerPort": details["admin_port"], "protocol": "TCP"},
            ]
        ready = "True" if details.get("ready", True) else "False"
        status: dict[str, Any] = {
            "phase": details.get("phase", "Running"),
            "conditions": [{"type": "Ready", "status": ready}],
            "containerStatuses": [
                {
                    "name": "target",
                    "ready": ready == "True",
                    "restartCount": details.get("restarts", 0),
                    "image": "wirelab",
                    "imageID": "",
                }
            ],
        }
        if details.get("ip"):
            status["podIP"] = details["ip"]
        metadata: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "labels": self.pods[name]}
        if details.get("deleting"):
            metadata["deletionTimestamp"] = "2025-01-01T00:00:00Z"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {"containers": [container]},
            "status": status,
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

        def _reply(self, code: int, payload: dict[str, Any], retry_after: str | None = None):
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(data)

        def _reset(self) -> None:
            """Close with a TCP RST (linger 0): the client reads ECONNRESET."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

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
                fault = next((f for f in cluster.faults if f.hits(self.command, parts.path)), None)
                if fault is not None:
                    request.fault = str(fault.kind)
                for method, prefix in cluster.forbidden:
                    if method == self.command and parts.path.startswith(prefix):
                        self._reply(403, _status(403, "Forbidden", "pods is forbidden"))
                        return
                if fault is None or fault.kind == "reset_after":
                    code, payload = self._route(request)
            if fault is None:
                self._reply(code, payload)
            elif isinstance(fault.kind, int):
                reason = {429: "TooManyRequests", 503: "ServiceUnavailable"}.get(fault.kind, "")
                message = f"fake API server: injected {fault.kind}"
                self._reply(fault.kind, _status(fault.kind, reason, message), fault.retry_after)
            else:
                self._reset()

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
                    # As the real API: the same values again change nothing, no new rollout.
                    if annotations and annotations.items() - d.template_annotations.items():
                        d.template_annotations.update(annotations)
                        d.old, d.current = d.old + d.current, []
                        d.generation += 1
                    if "replicas" in spec and spec["replicas"] != d.replicas:
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


def fake_api_server() -> Iterator[tuple[FakeCluster, str]]:
    """A fake API server on a loopback port: (its state, its URL). The ``cluster`` fixture
    here; other modules make it a fixture of their own name the same way."""
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


cluster = pytest.fixture(name="cluster")(fake_api_server)


def chart_labels(component: str, instance: str = "soak") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "wirelab",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
    }


def orchestrator_for(url: str, admin_token: str | None = None) -> KubernetesOrchestrator:
    return KubernetesOrchestrator(
        NAMESPACE,
        api_client=client.ApiClient(client.Configuration(host=url)),
        label_selector_for=chart_label_selector("soak"),
        deployment_name_for=chart_deployment_name("soak-wirelab-"),
        poll_interval=0.01,
        request_timeout=5,
        admin_token=admin_token,
        retry=FAST_RETRY,
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


# -- drop_connections and replicas: the pods' admin ports -------------------------------------
#
# The fake API server hands out pods whose IP is 127.0.0.1 and whose container port named
# ``admin`` is the admin port of a real ``wirelab targets serve`` process (or, where only the
# requests matter, of a recording HTTP server): the orchestrator's HTTP calls are real.

ADMIN_TOKEN = "k8s-admin-token-for-tests-only"


def start_sse_target(targets, token: str = ADMIN_TOKEN) -> tuple[Any, int]:
    """A real SSE target whose admin port requires ``token``: (it, its admin port)."""
    admin_port = free_port()
    running = targets.start(
        "sse",
        args=["--admin-port", str(admin_port), "--rate", "50"],
        env={**os.environ, "WIRELAB_ADMIN_TOKEN": token},
    )
    return running, admin_port


def admin_get(port: int, path: str, token: str = ADMIN_TOKEN) -> tuple[int, dict[str, Any]]:
    request = UrlRequest(f"http://127.0.0.1:{port}{path}")
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except HTTPError as exc:
        return exc.code, {}


def open_sse_stream(port: int) -> socket.socket:
    """A client reading the feed on ``GET /stream``; returns once the stream has begun."""
    stream = socket.create_connection(("127.0.0.1", port), timeout=5)
    stream.sendall(b"GET /stream HTTP/1.1\r\nHost: sse\r\n\r\n")
    assert b"200 OK" in stream.recv(4096)
    return stream


class RecordingAdmin:
    """A stand-in admin port that records every request and cuts ``dropped`` connections."""

    def __init__(self, dropped: int = 3) -> None:
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                recorder.requests.append(
                    (self.command, self.path, self.headers.get("Authorization"))
                )
                body = json.dumps({"dropped": {"sse": dropped}, "pid": 7}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recording_admin() -> Iterator[Any]:
    """``recording_admin()`` starts a :class:`RecordingAdmin`; all are stopped afterwards."""
    started: list[RecordingAdmin] = []

    def start(dropped: int = 3) -> RecordingAdmin:
        started.append(RecordingAdmin(dropped))
        return started[-1]

    try:
        yield start
    finally:
        for admin in started:
            admin.close()


def test_drop_connections_cuts_every_client_of_every_ready_pod_and_the_pods_keep_serving(
    cluster, targets
):
    state, url = cluster
    first, first_admin = start_sse_target(targets)
    second, second_admin = start_sse_target(targets)
    state.add_pod("soak-wirelab-sse-a", chart_labels("sse"), ip="127.0.0.1", admin_port=first_admin)
    state.add_pod(
        "soak-wirelab-sse-b", chart_labels("sse"), ip="127.0.0.1", admin_port=second_admin
    )
    clients = [open_sse_stream(first.port()), open_sse_stream(second.port())]
    try:
        result = orchestrator_for(url, ADMIN_TOKEN).drop_connections("sse")

        # Each client's stream ends without the drain's goodbye: a reset, not a deploy.
        for stream in clients:
            tail = read_until_closed(stream, 5)
            assert LAST_CLOSED_BY_SERVER[0], "the server did not end the stream"
            assert b"goaway" not in tail
    finally:
        for stream in clients:
            stream.close()

    assert result.action == "drop_connections"
    assert result.affected == ["soak-wirelab-sse-a", "soak-wirelab-sse-b"]
    assert result.detail == "cut 2 connections on 2 pods"
    (listing,) = state.of("GET", "/pods")
    assert listing.query["labelSelector"] == [chart_label_selector("soak")("sse")]
    for running, admin_port in ((first, first_admin), (second, second_admin)):
        status, stats = admin_get(admin_port, "/stats")
        assert status == 200
        assert stats["targets"]["sse"]["drops"] == 1
        assert stats["ready"] is True
        assert running.process.alive
        # Still serving: a client that comes back gets its stream at once.
        open_sse_stream(running.port()).close()


def test_drop_connections_sends_the_admin_token_and_a_refused_one_names_the_pod(cluster, targets):
    state, url = cluster
    running, admin_port = start_sse_target(targets)
    state.add_pod("soak-wirelab-sse-a", chart_labels("sse"), ip="127.0.0.1", admin_port=admin_port)

    for wrong in ("not-the-token", None):
        with pytest.raises(OrchestratorError) as error:
            orchestrator_for(url, wrong).drop_connections("sse")
        message = str(error.value)
        assert message.startswith("drop_connections sse: pod soak-wirelab-sse-a (http://127.0.0.1:")
        assert "HTTP 401" in message
        assert "WIRELAB_ADMIN_TOKEN must be the targets' token" in message
    assert admin_get(admin_port, "/stats")[1]["targets"]["sse"]["drops"] == 0

    result = orchestrator_for(url, ADMIN_TOKEN).drop_connections("sse")
    assert result.detail == "cut 0 connections on 1 pods"
    assert admin_get(admin_port, "/stats")[1]["targets"]["sse"]["drops"] == 1
    assert running.process.alive


def test_drop_connections_hits_only_ready_pods_that_match_the_services_label_selector(
    cluster, recording_admin
):
    state, url = cluster
    admins = {}

    def pod(name: str, labels: dict[str, str], **details: Any) -> None:
        admins[name] = recording_admin()
        state.add_pod(name, labels, ip="127.0.0.1", admin_port=admins[name].port, **details)

    pod("soak-wirelab-sse-a", chart_labels("sse"))
    pod("soak-wirelab-sse-b", chart_labels("sse"))
    pod("soak-wirelab-sse-starting", chart_labels("sse"), ready=False)
    pod("soak-wirelab-sse-terminating", chart_labels("sse"), deleting=True)
    pod("soak-wirelab-ws-a", chart_labels("ws"))
    pod("other-wirelab-sse-a", chart_labels("sse", instance="other"))
    pod("unrelated", {"app": "sse"})

    result = orchestrator_for(url, ADMIN_TOKEN).drop_connections("sse")

    hit = {name for name, admin in admins.items() if admin.requests}
    assert hit == {"soak-wirelab-sse-a", "soak-wirelab-sse-b"}
    for name in hit:
        assert admins[name].requests == [("POST", "/admin/drop", f"Bearer {ADMIN_TOKEN}")]
    assert result.affected == ["soak-wirelab-sse-a", "soak-wirelab-sse-b"]
    assert result.detail == "cut 6 connections on 2 pods"

    # ``all``: every target service of the release, still nobody else's pods.
    everywhere = orchestrator_for(url, ADMIN_TOKEN).drop_connections("all")
    assert sorted(everywhere.affected) == [
        "soak-wirelab-sse-a",
        "soak-wirelab-sse-b",
        "soak-wirelab-ws-a",
    ]
    assert not admins["other-wirelab-sse-a"].requests
    assert not admins["unrelated"].requests


def test_a_pod_that_does_not_answer_is_named_and_the_others_are_still_dropped(
    cluster, recording_admin
):
    state, url = cluster
    answering = recording_admin()
    state.add_pod("soak-wirelab-ws-a", chart_labels("ws"), ip="127.0.0.1", admin_port=free_port())
    state.add_pod(
        "soak-wirelab-ws-b", chart_labels("ws"), ip="127.0.0.1", admin_port=answering.port
    )

    with pytest.raises(OrchestratorError) as error:
        orchestrator_for(url, ADMIN_TOKEN).drop_connections("ws")

    message = str(error.value)
    assert "pod soak-wirelab-ws-a (http://127.0.0.1:" in message
    assert "admin port unreachable" in message
    assert "soak-wirelab-ws-b" not in message
    assert message.endswith("(the other 1 pods cut 3 connections)")
    assert answering.requests == [("POST", "/admin/drop", f"Bearer {ADMIN_TOKEN}")]


def test_drop_connections_with_no_ready_pod_says_which_selector_matched_nothing(cluster):
    state, url = cluster
    state.add_pod("soak-wirelab-ws-a", chart_labels("ws"), ready=False, ip="127.0.0.1")
    with pytest.raises(OrchestratorError, match=r"drop_connections ws: no ready pod matches .*=ws"):
        orchestrator_for(url, ADMIN_TOKEN).drop_connections("ws")


def test_replicas_lists_every_target_pod_as_the_local_lab_does_and_the_monitor_polls_them(
    cluster, targets
):
    state, url = cluster
    running, admin_port = start_sse_target(targets)
    state.add_pod("soak-wirelab-sse-a", chart_labels("sse"), ip="127.0.0.1", admin_port=admin_port)
    # A restarted container that is being deleted, and a pod still waiting for its IP.
    state.add_pod(
        "soak-wirelab-ws-a",
        chart_labels("ws"),
        ip="127.0.0.1",
        admin_port=free_port(),
        restarts=2,
        deleting=True,
    )
    state.add_pod("soak-wirelab-grpc-a", chart_labels("grpc"), phase="Pending", ready=False)
    state.add_pod("other-wirelab-sse-a", chart_labels("sse", instance="other"), ip="127.0.0.1")
    lab = orchestrator_for(url, ADMIN_TOKEN)

    replicas = {r["name"]: r for r in lab.replicas()}

    assert set(replicas) == {"soak-wirelab-sse-a", "soak-wirelab-ws-a", "soak-wirelab-grpc-a"}
    for replica in replicas.values():  # the keys of LocalOrchestrator.replicas()
        assert set(replica) == {
            "name", "protocol", "slot", "port", "admin_url", "pid", "generation", "alive",
            "draining",
        }  # fmt: skip
    assert replicas["soak-wirelab-sse-a"] == {
        "name": "soak-wirelab-sse-a",
        "protocol": "sse",
        "slot": None,
        "port": 8081,
        "admin_url": f"http://127.0.0.1:{admin_port}",
        "pid": 1,
        "generation": 0,
        "alive": True,
        "draining": False,
    }
    ws = replicas["soak-wirelab-ws-a"]
    assert (ws["protocol"], ws["pid"], ws["generation"], ws["draining"]) == ("ws", 3, 2, True)
    grpc = replicas["soak-wirelab-grpc-a"]
    assert (grpc["admin_url"], grpc["pid"], grpc["alive"]) == (None, None, False)

    # The target monitor reads each pod's /stats through that list, with the token.
    stream = open_sse_stream(running.port())
    try:
        monitor = TargetMonitor(lab.replicas, base_tags={"run_id": "k8s"}, token=ADMIN_TOKEN)
        points = monitor.poll()
    finally:
        stream.close()
    sse = monitor.latest["soak-wirelab-sse-a"]
    assert (sse["protocol"], sse["active_connections"], sse["ready"]) == ("sse", 1, 1)
    assert sse["accepted"] >= 1
    assert monitor.latest["soak-wirelab-ws-a"]["active_connections"] == 0  # not answering
    assert {p.tags["replica"] for p in points if p.measurement == "targets"} == set(replicas)


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
        retry=FAST_RETRY,
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
            "WIRELAB_ADMIN_TOKEN": ADMIN_TOKEN,
            "WIRELAB_K8S_ADMIN_PORT": "9200",
        }
    )
    assert (orchestrator.admin_token, orchestrator.admin_port) == (ADMIN_TOKEN, 9200)
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
    lab.replicas()

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


# -- ``all``: every target the release runs, as the built-in rolling-deploy asks ---------------


def release_with(state: FakeCluster, services: tuple[str, ...], replicas: int = 2) -> dict:
    return {
        service: state.add_deployment(f"soak-wirelab-{service}", chart_labels(service), replicas)
        for service in services
    }


def orchestrator_of(url: str, services: tuple[str, ...]) -> KubernetesOrchestrator:
    lab = orchestrator_for(url)
    return KubernetesOrchestrator(
        NAMESPACE,
        api_client=lab._api_client,
        label_selector_for=lab.label_selector_for,
        deployment_name_for=lab.deployment_name_for,
        poll_interval=0.01,
        request_timeout=5,
        services=services,
        retry=FAST_RETRY,
    )


def test_rolling_restart_all_patches_every_enabled_target_before_watching_any(cluster):
    state, url = cluster
    # grpc is disabled on this release: no Deployment, and the Role grants nothing on one.
    deployments = release_with(state, ("rest", "sse", "ws"))
    old = {service: set(d.current) for service, d in deployments.items()}

    result = orchestrator_of(url, ("rest", "sse", "ws")).rolling_restart("all", timeout=10)

    patches = state.of("PATCH")
    assert [p.path.rsplit("/", 1)[1] for p in patches] == [
        "soak-wirelab-rest",
        "soak-wirelab-sse",
        "soak-wirelab-ws",
    ]
    # One restartedAt for all, and every patch sent before the first rollout was watched.
    assert len({json.dumps(p.body, sort_keys=True) for p in patches}) == 1
    last_patch = state.requests.index(patches[-1])
    assert not [
        r for r in state.requests[:last_patch] if "/deployments/" in r.path and r.method == "GET"
    ]
    for service, deployment in deployments.items():
        assert not deployment.old and len(deployment.current) == 2
        assert not set(deployment.current) & old[service]
    assert not state.of("GET", "grpc")
    assert (result.action, result.service) == ("rolling_restart", "all")
    assert sorted(result.affected) == sorted(set().union(*old.values()))
    assert result.detail.startswith("rest: deployment soak-wirelab-rest: 2 replicas replaced; ")
    assert "ws: deployment soak-wirelab-ws: 2 replicas replaced (restartedAt " in result.detail


def test_rolling_restart_all_names_the_target_that_failed_and_still_rolls_the_others(cluster):
    state, url = cluster
    deployments = release_with(state, ("rest", "sse", "ws", "grpc"))
    # The last one watched: the fake controller moves only on a GET, a real one on its own.
    deployments["grpc"].stuck = True

    with pytest.raises(OrchestratorError) as error:
        orchestrator_for(url).rolling_restart("all", timeout=1)

    assert str(error.value) == (
        "rolling_restart all failed: grpc: rolling restart of grpc did not complete in 1s: "
        "1 of 2 replicas updated"
    )
    assert len(state.of("PATCH")) == 4
    for service in ("rest", "sse", "ws"):
        assert not deployments[service].old, f"{service} was not rolled"


def test_kill_all_deletes_count_pods_of_every_enabled_target_and_nothing_else(cluster):
    state, url = cluster
    deployments = release_with(state, ("sse", "ws"), replicas=3)
    state.add_pod("soak-wirelab-rest-0001", chart_labels("rest"))  # rest is not enabled
    state.add_pod("other-wirelab-ws-1", chart_labels("ws", instance="other"))

    result = orchestrator_of(url, ("sse", "ws")).kill("all", 2)

    deleted = sorted(r.path.rsplit("/", 1)[1] for r in state.of("DELETE"))
    assert deleted == sorted(result.affected)
    assert len([p for p in deleted if p.startswith("soak-wirelab-sse-")]) == 2
    assert len([p for p in deleted if p.startswith("soak-wirelab-ws-")]) == 2
    assert {"soak-wirelab-rest-0001", "other-wirelab-ws-1"} <= set(state.pods)
    assert {len(d.current) for d in deployments.values()} == {1}
    assert result.detail == (
        "sse: deleted 2 of 3 pods with grace period 0; ws: deleted 2 of 3 pods with grace period 0"
    )


def test_scale_all_patches_every_enabled_target_and_waits_until_each_is_ready(cluster):
    state, url = cluster
    deployments = release_with(state, ("rest", "sse", "ws", "grpc"), replicas=1)

    result = orchestrator_for(url).scale("all", 3, timeout=10)

    assert sorted(p.path.rsplit("/", 1)[1] for p in state.of("PATCH")) == [
        f"soak-wirelab-{s}" for s in ("grpc", "rest", "sse", "ws")
    ]
    assert all(p.body == {"spec": {"replicas": 3}} for p in state.of("PATCH"))
    assert {len(d.current) for d in deployments.values()} == {3}
    assert len(result.affected) == 8  # two new pods per target
    assert "grpc: deployment soak-wirelab-grpc: 1 -> 3 replicas" in result.detail


def test_wait_ready_all_waits_for_every_enabled_target(cluster):
    state, url = cluster
    deployments = release_with(state, ("rest", "ws"))
    ws = deployments["ws"]
    ws.stuck = True
    ws.old, ws.current = ws.current, []
    ws.generation += 1

    lab = orchestrator_of(url, ("rest", "ws"))
    with pytest.raises(OrchestratorError) as error:
        lab.wait_ready("all", timeout=0.2)
    assert str(error.value).startswith(
        "wait_ready all failed: ws: waiting for ws to be ready did not complete in 0.2s"
    )
    ws.stuck = False
    lab.wait_ready("all", timeout=10)
    assert state.of("GET", "soak-wirelab-rest") and state.of("GET", "soak-wirelab-ws")


def test_a_service_the_release_does_not_run_is_refused_before_any_call(cluster):
    state, url = cluster
    lab = orchestrator_of(url, ("rest", "ws"))
    for act in (
        lambda: lab.rolling_restart("grpc"),
        lambda: lab.kill("grpc"),
        lambda: lab.scale("grpc", 2),
        lambda: lab.wait_ready("grpc"),
        lambda: lab.drop_connections("grpc"),
    ):
        with pytest.raises(OrchestratorError, match=r"grpc: unknown service .*rest, ws, all"):
            act()
    assert not state.requests
    with pytest.raises(OrchestratorError, match="must be some of rest, sse, ws, grpc"):
        orchestrator_of(url, ("rest", "mqtt"))


def test_from_environment_takes_what_all_means_from_the_chart(cluster, monkeypatch):
    _, url = cluster
    monkeypatch.setattr(
        "wirelab.lab.kubernetes._load_api_client",
        lambda: client.ApiClient(client.Configuration(host=url)),
    )
    chart = {"WIRELAB_K8S_NAMESPACE": NAMESPACE, "WIRELAB_K8S_INSTANCE": "soak"}
    assert KubernetesOrchestrator.from_environment(chart).services == ("rest", "sse", "ws", "grpc")
    some = KubernetesOrchestrator.from_environment({**chart, "WIRELAB_K8S_SERVICES": "ws, grpc"})
    assert some.services == ("ws", "grpc")


# -- transient API errors: tried again with backoff; a wait counts them as "not yet" ---------
#
# What a real API server does under load or while it restarts, injected by the fake. Under
# the orchestrator's retries urllib3 keeps its default ones: it repeats a GET or DELETE that
# was reset, or answered 429/503 with a Retry-After, up to three times (honouring the
# header) before the orchestrator sees a failure. The faults below outlast that (and, in a
# wait, a whole call's attempts too). On a GET the 429 says ``Retry-After: 0``, to keep the
# test quick: the patch's test checks that a Retry-After of 1 s is waited for.

TRANSIENT = {
    "429 with Retry-After": {"kind": 429, "retry_after": "1"},
    "503": {"kind": 503},
    "connection reset": {"kind": "reset"},
}
#: urllib3's own retries (``Retry.DEFAULT``), under the orchestrator's.
URLLIB3_RETRIES = urllib3.Retry.DEFAULT.total


def on_a_get(fault: dict[str, Any]) -> dict[str, Any]:
    return {**fault, "retry_after": "0"} if fault.get("retry_after") else fault


def requests_per_call(method: str, fault: dict[str, Any]) -> int:
    """Requests one orchestrator call makes before it gives up on ``fault``."""
    repeated = method in ("GET", "DELETE") and (
        fault["kind"] == "reset" or fault.get("retry_after") is not None
    )
    return FAST_RETRY.attempts * (1 + URLLIB3_RETRIES if repeated else 1)


DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/"


def retried_after(requests: list[Request]) -> list[float]:
    """Seconds between consecutive requests."""
    return [later.at - earlier.at for earlier, later in itertools.pairwise(requests)]


@pytest.mark.parametrize("fault", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_a_transient_error_on_the_patch_is_retried_and_the_rollout_completes(cluster, fault):
    state, url = cluster
    ws = state.add_deployment("soak-wirelab-ws", chart_labels("ws"), replicas=2)
    old = set(ws.current)
    state.fail("PATCH", "soak-wirelab-ws", **fault)

    result = orchestrator_for(url).rolling_restart("ws", timeout=30)

    patches = state.of("PATCH")
    assert [p.fault for p in patches] == [str(fault["kind"]), None]
    assert ws.generation == 2, "one rollout, not one per attempt"
    assert not ws.old and not set(ws.current) & old
    assert result.affected == sorted(old)
    if fault.get("retry_after"):  # honoured: the backoff alone would be ~10 ms
        (gap,) = retried_after(patches)
        assert gap >= 0.9, f"retried {gap:.2f}s after a 429 that asked for 1s"


@pytest.mark.parametrize("fault", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_a_rollout_wait_counts_an_api_that_keeps_failing_as_not_yet(cluster, fault):
    """More failures in a row than one call tries: the wait polls on past them."""
    state, url = cluster
    ws = state.add_deployment("soak-wirelab-ws", chart_labels("ws"), replicas=2)
    fault = on_a_get(fault)
    times = requests_per_call("GET", fault) + 1
    injected = state.fail("GET", DEPLOYMENTS + "soak-wirelab-ws", times=times, **fault)

    orchestrator_for(url).rolling_restart("ws", timeout=60)

    assert injected.times == 0
    gets = state.of("GET", DEPLOYMENTS)
    assert len([g for g in gets if g.fault]) == times
    assert gets[-1].fault is None
    assert not ws.old and len(ws.current) == 2


@pytest.mark.parametrize("fault", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_a_transient_error_on_the_pod_list_after_a_scale_is_retried(cluster, fault):
    state, url = cluster
    rest = state.add_deployment("soak-wirelab-rest", chart_labels("rest"), replicas=1)
    # scale lists the pods before its patch and again once its wait is over: that one fails.
    fault = on_a_get(fault)
    failures = requests_per_call("GET", fault) - 1
    state.fail("GET", "/pods", skip=1, times=failures, **fault)

    result = orchestrator_for(url).scale("rest", 3, timeout=30)

    assert [r.fault for r in state.of("GET", "/pods")] == [
        None,
        *[str(fault["kind"])] * failures,
        None,
    ]
    assert len(rest.current) == 3
    assert len(result.affected) == 2


def test_a_transient_error_on_the_pod_list_of_a_kill_is_retried(cluster):
    state, url = cluster
    ws = state.add_deployment("soak-wirelab-ws", chart_labels("ws"), replicas=2)
    state.fail("GET", "/pods", kind="reset", times=URLLIB3_RETRIES + 1)  # more than urllib3

    result = orchestrator_for(url).kill("ws", 1)

    assert len(ws.current) == 1 and result.affected
    assert len(state.of("DELETE")) == 1


def test_an_api_failing_until_the_deadline_fails_the_wait_with_its_last_error(cluster):
    state, url = cluster
    state.add_deployment("soak-wirelab-ws", chart_labels("ws"), replicas=2)
    state.fail("GET", DEPLOYMENTS, kind=503, times=10**6)

    started = time.monotonic()
    with pytest.raises(OrchestratorError) as error:
        orchestrator_for(url).rolling_restart("ws", timeout=1)

    assert time.monotonic() - started < 10
    message = str(error.value)
    assert message.startswith("rolling restart of ws did not complete in 1s: ")
    assert "the Kubernetes API kept failing (get deployment soak-wirelab-ws: HTTP 503 " in message
    assert len(state.of("GET", DEPLOYMENTS)) > FAST_RETRY.attempts  # polled until the deadline


def test_a_call_outside_a_wait_gives_up_after_its_attempts(cluster):
    state, url = cluster
    state.add_deployment("soak-wirelab-ws", chart_labels("ws"), replicas=2)
    state.fail("GET", "/pods", kind=503, times=10**6)

    with pytest.raises(TransientApiError) as error:
        orchestrator_for(url).kill("ws", 1)

    assert str(error.value) == (
        "list pods app.kubernetes.io/name=wirelab,app.kubernetes.io/instance=soak,"
        "app.kubernetes.io/component=ws: HTTP 503 fake API server: injected 503 "
        f"(transient; gave up after {FAST_RETRY.attempts} attempts)"
    )
    assert len(state.of("GET", "/pods")) == FAST_RETRY.attempts
    assert not state.of("DELETE")


PERMANENT = {
    "403 on the patch": ("PATCH", "soak-wirelab-ws", 403, "Role does not allow it"),
    "404 in the wait": ("GET", DEPLOYMENTS, 404, "no such object"),
    "422 on the patch": ("PATCH", "soak-wirelab-ws", 422, "HTTP 422"),
}


@pytest.mark.parametrize("method, path, status, says", PERMANENT.values(), ids=PERMANENT.keys())
def test_a_permanent_error_fails_at_once_with_a_clear_message(cluster, method, path, status, says):
    state, url = cluster
    state.add_deployment("soak-wirelab-ws", chart_labels("ws"), replicas=2)
    state.fail(method, path, kind=status, times=10**6)

    with pytest.raises(OrchestratorError) as error:
        orchestrator_for(url).rolling_restart("ws", timeout=30)

    assert not isinstance(error.value, TransientApiError)
    assert says in str(error.value)
    assert "\n" not in str(error.value)
    assert len([r for r in state.requests if r.fault]) == 1, "a permanent error was retried"


def test_a_delete_whose_answer_was_lost_counts_as_done(cluster):
    """The pod was deleted, then the connection reset: the retry's 404 means done (urllib3
    sends that retry itself; the orchestrator only sees its 404)."""
    state, url = cluster
    ws = state.add_deployment("soak-wirelab-ws", chart_labels("ws"), replicas=3)
    state.fail("DELETE", "/pods/", kind="reset_after")

    result = orchestrator_for(url).kill("ws", 1)

    (victim,) = result.affected
    deletes = state.of("DELETE")
    assert [d.path.rsplit("/", 1)[1] for d in deletes] == [victim, victim]
    assert victim not in state.pods and len(ws.current) == 2


def test_retry_after_takes_seconds_or_an_http_date():
    assert retry_after({"Retry-After": "3"}) == 3.0
    soon = datetime.now(UTC).timestamp() + 30
    date = datetime.fromtimestamp(soon, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 <= retry_after({"Retry-After": date}) <= 31
    assert retry_after({"Retry-After": "Mon, 01 Jan 2001 00:00:00 GMT"}) == 0.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None
    assert retry_after(None) is None
