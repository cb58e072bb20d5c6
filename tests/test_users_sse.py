"""SseUser against real SSE targets: delivery, resets past retention, gaps, replica loss."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from tests.test_users_support import (
    REPO,
    assert_no_failures,
    harness_command,
    harness_env,
    parse_output,
    run_users,
    shared_targets,
    stat,
    stream,
    wait_for_peers,
    write_locustfile,
)

module_targets = pytest.fixture(scope="module", name="module_targets")(shared_targets)

LOCUSTFILE = """
from wirelab.users import SseUser

class Live(SseUser):
    weight = 2

class FromSeqOne(SseUser):
    # Resumes from seq 1, long out of a 20-event retention: must count a reset.
    stream_name = "sse resume"
    start_since = 1
    fixed_count = 1
"""


def test_sse_user_delivers_every_event_and_counts_a_reset_past_retention(
    module_targets, tmp_path
) -> None:
    target = module_targets.start("sse", args=["--rate", "200", "--retention", "20"])
    time.sleep(0.3)  # the head moves well past seq 21: seq 1 is out of retention
    result = run_users(
        write_locustfile(tmp_path, LOCUSTFILE),
        users=3,
        duration=2.5,
        args=["--sse-url", target.url("sse")],
    )
    assert_no_failures(result)
    live = stream(result, "sse", "sse deliver")
    assert live["delivered"] > 200
    assert (live["gaps"], live["missing"], live["duplicates"], live["out_of_order"]) == (0, 0, 0, 0)
    assert live["connects"] == 2 and live["reconnects"] == 0
    assert live["lag"]["n"] == live["delivered"]
    assert stat(result, "sse", "sse deliver")["count"] == live["delivered"]
    assert stat(result, "sse", "sse connect")["count"] == 3

    resumed = stream(result, "sse", "sse resume")
    # One reset for the start past retention; a reader starved on a crowded machine may fall
    # behind the 20-event retention again later, and each of those is a reset too.
    assert resumed["resets"] >= 1 and resumed["reset_lost"] > 0
    assert resumed["gaps"] == 0 and resumed["delivered"] > 0


def test_sse_user_reports_a_gap_when_the_server_skips_a_seq(module_targets, tmp_path) -> None:
    # TEST HOOK --test-skip-seq: the target never hands seq 5 to any client.
    target = module_targets.start("sse", args=["--rate", "100", "--test-skip-seq", "5"])
    locustfile = write_locustfile(
        tmp_path,
        """
        from wirelab.users import SseUser

        class Replay(SseUser):
            start_since = 0  # replay from the start, so seq 5 is in what arrives
        """,
    )
    result = run_users(locustfile, users=1, duration=1.5, args=["--sse-url", target.url("sse")])
    feed = stream(result, "sse", "sse deliver")
    assert (feed["gaps"], feed["missing"], feed["duplicates"]) == (1, 1, 0)
    # The gap is a failed Locust "deliver" event too, so the web UI shows it.
    assert stat(result, "sse", "sse deliver")["failures"] == 1
    assert any("gap before seq 6" in error["error"] for error in result["errors"])


def test_stream_users_resume_on_another_replica_when_one_drains(
    targets, redis_url, tmp_path
) -> None:
    """SIGTERM one of two replicas sharing Redis: SSE, WS and gRPC streams all come back
    on the other, resume from their last seq, and lose or repeat nothing."""
    args = ["--rate", "50", "--retry-ms", "100", "--grace", "3"]
    first = targets.start(["sse", "ws", "grpc"], redis_url=redis_url, args=args)
    second = targets.start(["sse", "ws", "grpc"], redis_url=redis_url, args=args)
    locustfile = write_locustfile(
        tmp_path,
        """
        from locust import constant
        from wirelab.users import GrpcUser, SseUser, WebSocketUser

        class Sse(SseUser):
            fixed_count = 2

        class Ws(WebSocketUser):
            fixed_count = 2
            wait_time = constant(0.5)

        class Grpc(GrpcUser):
            fixed_count = 2
            wait_time = constant(0.5)
        """,
    )

    def both(protocol: str, scheme: str) -> str:
        return ",".join(
            f"{scheme}127.0.0.1:{replica.ports[protocol]}" for replica in (first, second)
        )

    command = harness_command(
        locustfile,
        users=6,
        duration=10,
        args=[
            "--sse-url", both("sse", "http://"),
            "--ws-url", both("ws", "ws://"),
            "--grpc-target", both("grpc", ""),
            # Honour the servers' hints, capped short to keep the test short.
            "--reconnect", "server_hint:base=0.1,cap=1",
        ],
    )  # fmt: skip
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=harness_env(),
        cwd=REPO,
    ) as harness:
        try:
            # Users connected (to the replica that will drain too) and reading.
            ports = [first.ports[protocol] for protocol in ("sse", "ws", "grpc")]
            wait_for_peers(first.process.pid, ports, 1)
            time.sleep(1.0)
            first.process.signal(signal.SIGTERM)
            assert first.wait_exit(10) is not None, "the drained replica did not exit"
            stdout, stderr = harness.communicate(timeout=60)
        finally:
            if harness.poll() is None:
                harness.kill()
    result = parse_output(stdout, stderr, harness.returncode)

    for protocol in ("sse", "ws", "grpc"):
        feed = stream(result, protocol, f"{protocol} deliver")
        figures = {key: feed[key] for key in ("delivered", "gaps", "duplicates", "reconnects")}
        assert feed["delivered"] > 0, (protocol, figures)
        assert (feed["gaps"], feed["missing"], feed["duplicates"]) == (0, 0, 0), (protocol, feed)
        assert feed["out_of_order"] == 0 and feed["resets"] == 0, (protocol, feed)
        # Users spread over both replicas: at least one per protocol lost its server.
        assert feed["disconnects"] >= 1 and feed["reconnects"] >= 1, (protocol, figures)
        assert feed["goaways"] >= 1, (protocol, feed)
        assert feed["rt"]["n"] >= 1, f"{protocol}: no reconnect time recorded"
    # Request/response calls made during the drain finished, or were retried and succeeded:
    # a rolling deploy costs no failed echo, ping, Echo or Chat.
    assert_no_failures(result)


def test_a_silent_stream_is_detected_as_a_zombie_and_replaced(module_targets, tmp_path) -> None:
    """SIGSTOP the server: the socket stays open but even heartbeats stop. The user must
    notice within its read timeout, reconnect once the server is back, and go on."""
    target = module_targets.start("sse", args=["--rate", "0", "--heartbeat", "0.2s"])
    locustfile = write_locustfile(
        tmp_path,
        """
        from wirelab.users import SseUser

        class Watcher(SseUser):
            read_timeout = 1.0  # five heartbeats
            connect_timeout = 0.5
        """,
    )
    command = harness_command(
        locustfile,
        users=1,
        duration=7,
        args=["--sse-url", target.url("sse"), "--reconnect", "fixed:delay=0.2"],
    )
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=harness_env(), cwd=REPO,
    ) as harness:  # fmt: skip
        try:
            wait_for_peers(target.process.pid, [target.ports["sse"]], 1)
            time.sleep(0.5)  # a few heartbeats read
            target.process.signal(signal.SIGSTOP)
            # Found silent within 1.25 read timeouts, then a reconnect that times out.
            time.sleep(2.5)
        finally:
            target.process.signal(signal.SIGCONT)
        stdout, stderr = harness.communicate(timeout=60)
    result = parse_output(stdout, stderr, harness.returncode)
    feed = stream(result, "sse", "sse deliver")
    assert feed["disconnects"] >= 1, feed
    assert feed["reconnects"] >= 1 and feed["connects"] >= 2, feed
    # While stopped, the kernel still accepts connections, but no headers come back.
    assert feed["connect_failures"] >= 1, feed


@pytest.fixture
def tls_sse_server(tmp_path) -> Iterator[str]:
    """A tiny HTTPS event-stream server (self-signed): seq 1..3, then it holds the stream."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            with raw, context.wrap_socket(raw, server_side=True) as conn:
                conn.recv(4096)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Connection: close\r\n\r\n: hello\n\n"
                    + b"".join(
                        b'id: %d\ndata: {"seq":%d,"ts":%d}\n\n' % (seq, seq, time.time_ns() // 1000)
                        for seq in (1, 2, 3)
                    )
                )
                stop.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_sse_user_reads_an_https_stream(tls_sse_server, tmp_path) -> None:
    locustfile = write_locustfile(
        tmp_path,
        """
        from wirelab.users import SseUser

        class Secure(SseUser):
            verify_tls = False  # the test server's certificate is self-signed
        """,
    )
    result = run_users(locustfile, users=1, duration=1.2, args=["--sse-url", tls_sse_server])
    feed = stream(result, "sse", "sse deliver")
    assert (feed["delivered"], feed["gaps"], feed["connects"]) == (3, 0, 1)
