"""Slow consumers and overload at the targets: memory stays bounded while 1,000 clients stop
reading, the clients who read keep receiving, and a process at its connection limit refuses
new ones clearly (HTTP 503 + Retry-After, WS close 1013, gRPC RESOURCE_EXHAUSTED).

The figures (peak RSS over baseline, the control client's delivery-lag p99 before and
during the stall) are printed; the assertions are on memory and delivery, never on speed.
"""

from __future__ import annotations

import json
import selectors
import socket
import statistics
import threading
import time

import grpc
import psutil
import websocket

from tests.fixtures.targets import RunningTarget, TargetFactory
from tests.test_bad_input_corpus import (
    client_frame,
    close_code_from,
    raw_exchange,
    read_until_closed,
    status_of,
    ws_handshake,
    ws_handshake_and_rest,
)
from wirelab.targets.proto import wirelab_pb2 as pb
from wirelab.targets.proto import wirelab_pb2_grpc as pb_grpc

STALLED = 1000
STALL_TIMEOUT_S = 3.0
#: Peak RSS over the pre-stall baseline that the target may reach with 1,000 stalled clients:
#: per connection the transport's high-water mark (64 KiB) plus the protocol objects, with
#: room to spare. Unbounded queueing (1 KiB events at 100/s to 1,000 clients for 10 s) would
#: be about 1 GiB.
RSS_BOUND_BYTES = 200 * 1024 * 1024


class ControlReader:
    """A WebSocket subscriber that reads everything, recording (receive time, lag µs)."""

    def __init__(self, running: RunningTarget) -> None:
        self.running = running
        self.samples: list[tuple[float, int]] = []
        self.seqs: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ControlReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            ws = websocket.create_connection(self.running.url("ws", "/ws"), timeout=10)
            ws.send(json.dumps({"type": "subscribe", "since": None}))
            while not self._stop.is_set():
                message = json.loads(ws.recv())
                now = time.time()
                if message["type"] == "event":
                    self.seqs.append(message["seq"])
                    self.samples.append((time.monotonic(), int(now * 1e6) - message["ts"]))
            ws.close()
        except Exception as exc:
            self.errors.append(repr(exc))

    def lag_p99_ms(self, start: float, end: float) -> float:
        lags = sorted(lag for at, lag in self.samples if start <= at < end)
        assert len(lags) >= 20, len(lags)
        return statistics.quantiles(lags, n=100)[98] / 1000


def stalled_socket(port: int, request: bytes) -> socket.socket:
    """A client that sends its request and never reads: tiny receive buffer, fills fast."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


def test_a_thousand_clients_that_stop_reading_keep_memory_bounded_and_others_receiving(
    targets: TargetFactory,
) -> None:
    running = targets.start(
        ["sse", "ws"],
        args=[
            "--rate", "200", "--payload-size", "1KiB", "--heartbeat", "1s",
            "--send-stall-timeout", f"{STALL_TIMEOUT_S}s", "--socket-send-buffer", "64KiB",
        ],
    )  # fmt: skip
    process = psutil.Process(running.process.pid)
    stalled: list[socket.socket] = []
    with ControlReader(running) as control:
        time.sleep(4)
        baseline_rss = process.memory_info().rss
        t_base_end = time.monotonic()
        for i in range(STALLED):
            if i % 2:
                sock = ws_handshake(running.port("ws"), rcvbuf=4096)
                sock.sendall(client_frame(0x1, b'{"type":"subscribe","since":null}'))
            else:
                sock = stalled_socket(
                    running.port("sse"), b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
                )
            stalled.append(sock)
        connected_at = time.monotonic()
        # The lag figure is taken once everyone is connected: the stall, not the connect storm.
        t_stall_start = connected_at + 0.5
        peak_rss = 0
        while time.monotonic() < connected_at + STALL_TIMEOUT_S + 7:
            peak_rss = max(peak_rss, process.memory_info().rss)
            time.sleep(0.1)
        t_stall_end = time.monotonic()
    try:
        # The stalled clients were cut: reading a sample now ends (EOF or reset) after what
        # was already buffered, instead of streaming on.
        # An odd step samples both protocols (even indices are SSE, odd ones WebSocket).
        sample = stalled[::21]
        cut = count_cut(sample, deadline=time.monotonic() + 12)
    finally:
        for sock in stalled:
            sock.close()
    _, sse_stats = http_json(running.port("sse"), "/stats")
    growth = peak_rss - baseline_rss
    base_p99 = control.lag_p99_ms(t_base_end - 3.5, t_base_end)
    # Two windows: while the stalled clients' buffers fill and they are cut (the target
    # still writes to them), and after the cut (the policy's steady state).
    fill_p99 = control.lag_p99_ms(t_stall_start, connected_at + STALL_TIMEOUT_S + 2)
    stall_p99 = control.lag_p99_ms(connected_at + STALL_TIMEOUT_S + 3, t_stall_end)
    print(
        f"\nslow consumers: {STALLED} stalled; RSS baseline {baseline_rss / 2**20:.1f} MiB, "
        f"peak {peak_rss / 2**20:.1f} MiB (+{growth / 2**20:.1f} MiB, bound "
        f"{RSS_BOUND_BYTES / 2**20:.0f} MiB); control lag p99 {base_p99:.2f} ms, while filling "
        f"and cutting {fill_p99:.2f} ms ({(fill_p99 - base_p99) / base_p99:+.0%}), after the "
        f"cut {stall_p99:.2f} ms ({(stall_p99 - base_p99) / base_p99:+.0%}); sse stalled_streams "
        f"{sse_stats.get('stalled_streams')}; cut {cut}/{len(sample)} sampled"
    )
    assert control.errors == []
    seqs = control.seqs
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "control client saw a gap"
    assert growth < RSS_BOUND_BYTES
    assert cut >= 0.9 * len(sample)
    assert sse_stats["stalled_streams"] >= STALLED // 2 * 0.9


def count_cut(socks: list[socket.socket], deadline: float) -> int:
    """How many of ``socks`` the server closed: read each (bounded) until EOF or a reset."""
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, int] = {}
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        received[sock] = 0
    cut = 0
    while received and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.2):
            sock = key.fileobj
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            received[sock] += len(data)
            if not data:
                cut += 1
            if not data or received[sock] > 8 << 20:  # 8 MiB: it is still being served
                selector.unregister(sock)
                del received[sock]
    selector.close()
    return cut


def http_json(port: int, path: str) -> tuple[int, dict]:
    response = raw_exchange(
        port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    return status_of(response), json.loads(response.partition(b"\r\n\r\n")[2])


def test_connection_limit_is_refused_cleanly_per_protocol(targets: TargetFactory) -> None:
    limit = 4
    running = targets.start(
        ["rest", "sse", "ws", "grpc"], args=["--max-connections", str(limit), "--rate", "20"]
    )
    held: list[socket.socket] = []
    try:
        # HTTP (SSE port): `limit` open streams, then the next connection gets 503 + Retry-After.
        for _ in range(limit):
            held.append(
                stalled_socket(running.port("sse"), b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            )
        time.sleep(0.3)
        response = raw_exchange(running.port("sse"), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(response) == 503
        assert b"\r\nRetry-After: 1\r\n" in response
        assert b"too_many_connections" in response
        # WebSocket: `limit` sessions, then the next handshake is closed with 1013.
        sessions = [
            websocket.create_connection(running.url("ws", "/ws"), timeout=5) for _ in range(limit)
        ]
        extra, data = ws_handshake_and_rest(running.port("ws"))
        with extra:
            if close_code_from(data) is None:
                data += read_until_closed(extra, 5, lambda d: close_code_from(data + d) is not None)
        assert close_code_from(data) == 1013
        for ws in sessions:  # those within the limit still work
            ws.send(json.dumps({"type": "echo", "id": 1, "ts": 0, "payload": "x"}))
            assert json.loads(ws.recv())["type"] == "echo"
            ws.close()
        # gRPC: `limit` concurrent streams, then the next call fails with RESOURCE_EXHAUSTED.
        with grpc.insecure_channel(running.url("grpc")) as channel:
            stub = pb_grpc.LabStub(channel)
            streams = [stub.Subscribe(pb.SubscribeRequest(), timeout=30) for _ in range(limit)]
            for stream in streams:
                next(stream)
            try:
                stub.Echo(pb.EchoRequest(id="x"), timeout=5)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            else:
                raise AssertionError("the call over the limit was served")
            streams[0].cancel()
            time.sleep(0.3)
            assert stub.Echo(pb.EchoRequest(id="y"), timeout=5).id == "y"
            for stream in streams[1:]:
                stream.cancel()
    finally:
        for sock in held:
            sock.close()
    # Below the limit again: the HTTP port answers normally.
    time.sleep(0.3)
    assert (
        status_of(
            raw_exchange(
                running.port("sse"),
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
        )
        == 200
    )
