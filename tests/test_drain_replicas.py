"""Draining observed by real clients across replicas, and the admin port that triggers it.

The per-protocol goodbyes on SIGTERM (WS close 1001 with a hint, SSE ``retry:`` + goaway then
EOF, gRPC GoAway + UNAVAILABLE, REST ``Connection: close``) are pinned in each target's own
test module; here: what the client does next (a call on another replica succeeds), the
admin port (drain, drop, stats, its token), and gRPC's max connection age.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
import urllib.error
import urllib.request

import grpc
import pytest
from websockets.sync.client import connect as ws_connect

from wirelab.processes import free_port
from wirelab.targets.proto import wirelab_pb2 as pb
from wirelab.targets.proto import wirelab_pb2_grpc as pb_grpc

#: gRPC's own retry for idempotent unary calls, as the lab's users configure it.
RETRY = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "wirelab.v1.Lab", "method": "Echo"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def admin(port: int, method: str, path: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST" else None
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def events_of(call, count: int) -> list[int]:
    seqs = []
    for message in call:
        if message.WhichOneof("kind") == "event":
            seqs.append(message.event.seq)
            if len(seqs) == count:
                break
    return seqs


def test_grpc_client_gets_goaway_then_its_calls_succeed_on_another_replica(
    targets, redis_url
) -> None:
    args = ["--rate", "50", "--grace", "5s", "--retry-ms", "200", "--retry-jitter-ms", "100"]
    first = targets.start("grpc", redis_url=redis_url, args=args)
    second = targets.start("grpc", redis_url=redis_url, args=args)
    target = f"ipv4:127.0.0.1:{first.port()},127.0.0.1:{second.port()}"
    options = [("grpc.lb_policy_name", "pick_first"), ("grpc.service_config", RETRY)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = pb_grpc.LabStub(channel)
        assert stub.Echo(pb.EchoRequest(id="before"), timeout=5).id == "before"
        feed = stub.Subscribe(pb.SubscribeRequest(since=0), timeout=20)
        seqs = events_of(feed, 5)  # pick_first: the first address, i.e. the first replica
        first.process.signal(15)
        kinds = []
        with pytest.raises(grpc.RpcError) as ended:
            for message in feed:
                kinds.append(message.WhichOneof("kind"))
                if kinds[-1] == "event":
                    seqs.append(message.event.seq)
                elif kinds[-1] == "goaway":
                    hint = message.goaway.reconnect_after_ms
        assert kinds[-1] == "goaway" and 200 <= hint <= 300
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert first.wait_exit(10) == 0

        # The same channel, the first replica gone: the unary call and the resumed stream
        # are served by the second one, and the stream continues exactly where it ended.
        assert stub.Echo(pb.EchoRequest(id="after"), timeout=5).id == "after"
        resumed = stub.Subscribe(pb.SubscribeRequest(since=seqs[-1]), timeout=20)
        more = events_of(resumed, 10)
        resumed.cancel()
    assert more[0] == seqs[-1] + 1
    assert more == list(range(more[0], more[0] + 10))
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_admin_drain_needs_the_token_then_runs_the_sigterm_sequence(targets) -> None:
    admin_port = free_port()
    running = targets.start(
        "ws",
        args=["--admin-port", str(admin_port), "--retry-ms", "300", "--retry-jitter-ms", "200"],
        env={"WIRELAB_ADMIN_TOKEN": "s3cret", "PATH": "/usr/bin:/bin"},
    )
    assert admin(admin_port, "GET", "/readyz") == (200, {"status": "ready"})
    assert admin(admin_port, "POST", "/admin/drain")[0] == 401
    assert admin(admin_port, "POST", "/admin/drain", "wrong")[0] == 401
    assert admin(admin_port, "GET", "/stats")[0] == 401
    assert running.process.alive

    with ws_connect(running.url("ws", "/ws"), subprotocols=["wirelab.v1"]) as ws:
        ws.send(json.dumps({"type": "subscribe", "since": None}))
        assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
        status, body = admin(admin_port, "POST", "/admin/drain", "s3cret")
        assert (status, body["status"]) == (202, "draining")
        with pytest.raises(Exception):  # noqa: B017 - the close ends the iteration
            while True:
                ws.recv(timeout=5)
        assert ws.close_code == 1001
        assert 300 <= json.loads(ws.close_reason)["reconnect_after_ms"] <= 500
    assert running.wait_exit(10) == 0


def test_admin_drop_cuts_every_connection_and_keeps_serving(targets, redis_url) -> None:
    admin_port = free_port()
    running = targets.start(
        ["sse", "ws", "grpc"],
        redis_url=redis_url,
        args=["--admin-port", str(admin_port), "--rate", "50"],
    )
    stack = contextlib.ExitStack()
    sse = stack.enter_context(
        socket.create_connection(("127.0.0.1", running.port("sse")), timeout=5)
    )
    sse.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in sse.recv(4096)
    ws = stack.enter_context(ws_connect(running.url("ws", "/ws"), subprotocols=["wirelab.v1"]))
    ws.send(json.dumps({"type": "subscribe", "since": 0}))
    with grpc.insecure_channel(running.url("grpc")) as channel:
        stub = pb_grpc.LabStub(channel)
        feed = stub.Subscribe(pb.SubscribeRequest(since=0), timeout=20)
        events_of(feed, 3)
        stats = admin(admin_port, "GET", "/stats")[1]
        assert {p: stats["targets"][p]["active_connections"] for p in ("sse", "ws", "grpc")} == {
            "sse": 1, "ws": 1, "grpc": 1,
        }  # fmt: skip

        status, dropped = admin(admin_port, "POST", "/admin/drop")
        assert status == 200
        assert dropped["dropped"] == {"sse": 1, "ws": 1, "grpc": 1}
        # The SSE stream dies without its goaway: reset or EOF, no more events.
        sse.settimeout(5)
        tail = b""
        try:
            while chunk := sse.recv(65536):
                tail += chunk
        except ConnectionResetError:
            pass
        assert b"goaway" not in tail
        with pytest.raises(Exception):  # noqa: B017 - aborted: no close frame
            while True:
                ws.recv(timeout=5)
        assert ws.close_code != 1001
        with pytest.raises(grpc.RpcError):
            for _ in feed:
                pass

        # And it is still serving: the same clients come back at once.
        assert admin(admin_port, "GET", "/readyz")[0] == 200
        assert stub.Echo(pb.EchoRequest(id="back"), timeout=5).id == "back"
    with ws_connect(running.url("ws", "/ws"), subprotocols=["wirelab.v1"]) as again:
        again.send(json.dumps({"type": "ping", "id": 1}))
        assert json.loads(again.recv(timeout=5))["type"] == "pong"
    stats = admin(admin_port, "GET", "/stats")[1]
    assert all(stats["targets"][p]["drops"] == 1 for p in ("sse", "ws", "grpc"))
    assert stats["targets"]["ws"]["accepted"] == 2
    stack.close()


def test_rest_drain_answers_connection_close_while_the_balancer_still_sends(targets) -> None:
    running = targets.start("rest", args=["--drain-delay", "1s", "--grace", "5s"])
    connection = http.client.HTTPConnection("127.0.0.1", running.port("rest"), timeout=5)
    connection.request(
        "POST", "/echo", body=b'{"n": 1}', headers={"Content-Type": "application/json"}
    )
    first = connection.getresponse()
    first.read()
    assert first.status == 200 and first.getheader("Connection") is None  # keep-alive
    running.process.signal(15)
    time.sleep(0.2)  # within the drain delay: not ready, still accepting
    connection.request(
        "POST", "/echo", body=b'{"n": 2}', headers={"Content-Type": "application/json"}
    )
    second = connection.getresponse()
    assert second.status == 200 and json.loads(second.read())["n"] == 2
    assert second.getheader("Connection") == "close"
    ready = http.client.HTTPConnection("127.0.0.1", running.port("rest"), timeout=5)
    ready.request("GET", "/readyz")
    assert ready.getresponse().status == 503
    assert running.wait_exit(10) == 0


def test_grpc_max_connection_age_sends_clients_away_to_rebalance(targets) -> None:
    running = targets.start(
        "grpc", args=["--grpc-max-connection-age", "1s", "--grace", "1s", "--rate", "50"]
    )
    with grpc.insecure_channel(running.url("grpc")) as channel:
        stub = pb_grpc.LabStub(channel)
        started = time.monotonic()
        feed = stub.Subscribe(pb.SubscribeRequest(since=0), timeout=20)
        with pytest.raises(grpc.RpcError) as ended:
            for _ in feed:
                pass
        # Age (1 s, +-10 % jitter) plus grace (1 s): the stream is ended, never left forever.
        assert time.monotonic() - started < 6
        assert ended.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        assert stub.Echo(pb.EchoRequest(id="reconnected"), timeout=5).id == "reconnected"
