"""The local orchestrator on a real replicated lab: its own redis-server, replica processes,
HAProxy in front of the WebSocket replicas, gRPC replicas on prepared address slots; acted
on through the control API, the way the Locust master does it."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from tests.fixtures import require_binary
from wirelab.lab.control import ControlClient, ControlServer
from wirelab.lab.haproxy import Backend, render_config
from wirelab.lab.local_orchestrator import LocalOrchestrator
from wirelab.lab.orchestrator import Orchestrator, OrchestratorError
from wirelab.lab.replicas import ReplicaLab, ReplicaSettings
from wirelab.targets.proto import wirelab_pb2 as pb
from wirelab.targets.proto import wirelab_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaLab]:
    require_binary("haproxy")
    require_binary("redis-server")
    run_dir = tmp_path_factory.mktemp("lab")
    settings = ReplicaSettings(
        log_dir=run_dir / "logs",
        redis_url="",
        rate=50,
        grace=5,
        drain_delay=0.3,
        retry_ms=100,
        retry_jitter_ms=200,
        admin_token="admin-secret",
    )
    replica_lab = ReplicaLab(run_dir, settings, {"ws": 2, "grpc": 2})
    try:
        replica_lab.start()
        yield replica_lab
    finally:
        replica_lab.close()
    # Everything it started is gone.
    assert not any(r.process.alive for pool in replica_lab.pools.values() for r in pool.replicas)
    assert replica_lab.redis is not None and not replica_lab.redis.alive
    assert not replica_lab.haproxy.process.alive


@pytest.fixture(scope="module")
def control(lab: ReplicaLab) -> Iterator[ControlClient]:
    with ControlServer(LocalOrchestrator(lab)) as server:
        yield ControlClient(server.url, server.token)


class FeedReader(threading.Thread):
    """A WebSocket feed client through HAProxy that resumes with ``since`` after a close."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seqs: list[int] = []
        self.closes: list[int | None] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            since = self.seqs[-1] if self.seqs else None
            try:
                with ws_connect(self.url, subprotocols=["wirelab.v1"], open_timeout=5) as ws:
                    ws.send(json.dumps({"type": "subscribe", "since": since}))
                    while not self.stop.is_set():
                        message = json.loads(ws.recv(timeout=5))
                        if message["type"] == "event":
                            self.seqs.append(message["seq"])
                    return
            except ConnectionClosed as closed:
                self.closes.append(closed.rcvd.code if closed.rcvd else None)
            except OSError:
                time.sleep(0.05)


def test_haproxy_config_has_one_frontend_per_protocol_checks_readyz_and_prepared_slots() -> None:
    config = render_config(
        [
            Backend("rest", 9000, (9101, 9102, 9103), frozenset({0, 1})),
            Backend("ws", 9001, (9201, 9202), frozenset({0})),
        ],
        stats_socket=Path("/tmp/x.sock"),
    )  # fmt: skip
    assert "frontend rest_in\n    bind 127.0.0.1:9000" in config
    assert "backend ws\n    balance leastconn" in config
    assert "backend rest\n    balance roundrobin" in config
    assert config.count("option httpchk GET /readyz") == 2
    assert "timeout tunnel 1h" in config
    assert "retry-on conn-failure empty-response 503" in config
    assert "server s3 127.0.0.1:9103 check" in config and config.count(" disabled") == 2
    assert "stats socket /tmp/x.sock mode 600 level admin" in config


def test_rolling_restart_replaces_every_replica_while_a_client_resumes_without_a_gap(
    lab: ReplicaLab, control: ControlClient
) -> None:
    assert isinstance(control, Orchestrator)
    urls = lab.urls()
    assert urls["grpc"].count(",") == 2  # two replicas and a spare slot
    before = {r["name"]: r["pid"] for r in control.replicas()}
    assert sorted(before) == ["grpc-1", "grpc-2", "ws-1", "ws-2"]
    readers = [FeedReader(urls["ws"] + "/ws") for _ in range(4)]
    for reader in readers:
        reader.start()
    target = "ipv4:" + urls["grpc"]
    options = [("grpc.lb_policy_name", "round_robin")]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = pb_grpc.LabStub(channel)
        stub.Echo(pb.EchoRequest(id="warm"), timeout=5, wait_for_ready=True)
        time.sleep(0.5)
        seen = len(control.events())

        result = control.rolling_restart("all", timeout=60)

        assert sorted(result.affected) == ["grpc-1", "grpc-2", "ws-1", "ws-2"]
        # The new replicas serve, under the same names, in other processes.
        after = {r["name"]: r["pid"] for r in control.replicas()}
        assert sorted(after) == sorted(before)
        assert not set(after.values()) & set(before.values())
        assert stub.Echo(pb.EchoRequest(id="after"), timeout=5).id == "after"
    time.sleep(1.0)
    for reader in readers:
        reader.stop.set()
        reader.join(10)
    for reader in readers:
        assert 1001 in reader.closes, reader.closes  # sent away politely, not cut
        assert len(reader.seqs) > 20
        assert reader.seqs == list(range(reader.seqs[0], reader.seqs[0] + len(reader.seqs)))

    events = control.events(seen)
    for name in before:
        kinds = [e["kind"] for e in events if e["replica"] == name]
        # Max surge 1, max unavailable 0: the new one is in before the old one leaves.
        assert kinds == ["replica_start", "replica_drain", "replica_stop"], (name, kinds)
    assert all("exited with code 0" in e["text"] for e in events if e["kind"] == "replica_stop")
    control.wait_ready("all", timeout=10)
    states = lab.haproxy.server_states("ws")
    assert sorted(states.values()) == ["maint", "up", "up"]


def test_kill_scale_and_drop_through_the_control_api(
    lab: ReplicaLab, control: ControlClient
) -> None:
    victim = next(r for r in control.replicas() if r["name"] == "ws-1")
    result = control.kill("ws", 1)
    assert result.affected == ["ws-1"]
    replaced = next(r for r in control.replicas() if r["name"] == "ws-1")
    assert replaced["pid"] != victim["pid"] and replaced["alive"]
    stops = [e for e in control.events() if e["kind"] == "replica_stop" and e["replica"] == "ws-1"]
    assert "killed" in stops[-1]["text"]

    assert sorted(control.scale("ws", 3).affected) == ["ws-3"]
    assert sorted(r["name"] for r in control.replicas() if r["protocol"] == "ws") == [
        "ws-1", "ws-2", "ws-3",
    ]  # fmt: skip
    with pytest.raises(OrchestratorError, match="no free address slot"):
        control.scale("ws", 4)  # 2 replicas + 1 spare slot were prepared
    assert control.scale("ws", 2).affected == ["ws-3"]

    with ws_connect(lab.urls()["ws"] + "/ws", subprotocols=["wirelab.v1"]) as ws:
        ws.send(json.dumps({"type": "subscribe", "since": None}))
        assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
        dropped = control.drop_connections("ws")
        # Our client at least; a load balancer's health check open at that instant is cut too.
        cut = re.search(r"cut (\d+) connections", dropped.detail)
        assert cut and int(cut.group(1)) >= 1, dropped.detail
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=5)
        assert closed.value.rcvd is None or closed.value.rcvd.code != 1001  # cut, not drained

    with pytest.raises(OrchestratorError, match="only 2 running"):
        control.kill("ws", 3)
    with pytest.raises(OrchestratorError, match="sse: unknown service in this lab"):
        control.rolling_restart("sse")
    control.wait_ready("all", timeout=10)


def test_the_control_api_refuses_a_caller_without_its_token(control: ControlClient) -> None:
    for token in ("", "wrong"):
        request = urllib.request.Request(
            f"{control.url}/actions/kill", data=b'{"service": "ws"}', method="POST"
        )
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
    with pytest.raises(OrchestratorError, match="no action"):
        control._call("POST", "/actions/explode", {"service": "ws"}, 5)
    with pytest.raises(OrchestratorError, match="'service' is required"):
        control._call("POST", "/actions/kill", {}, 5)
