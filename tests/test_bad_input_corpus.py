"""A malformed-input corpus per protocol, sent to one running target process that serves
all four protocols, while well-behaved control clients on the same process keep working.

The rule pinned here: a bad connection is refused with the right code (HTTP 4xx with the
JSON error body, a WebSocket close code, an HTTP/2 GOAWAY) and costs only itself — the
control SSE stream and WebSocket subscription see every event in order, with no error, and
a plain request on every protocol succeeds after each bad one.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
import websocket

from tests.fixtures.targets import RunningTarget, TargetFactory
from wirelab.sse_parser import SseParser
from wirelab.targets.proto import wirelab_pb2 as pb
from wirelab.targets.proto import wirelab_pb2_grpc as pb_grpc
from wirelab_bench.rawws import client_frame, upgrade_request

HEADER_TIMEOUT_S = 1.0
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


# -- raw socket helpers ----------------------------------------------------------------


def raw_exchange(
    port: int, payload: bytes | list[bytes], *, gap: float = 0.0, wait: float = 5.0
) -> bytes:
    """Send ``payload`` (pieces with ``gap`` s between them); everything the server answers
    until it closes the connection (or ``wait`` s pass)."""
    pieces = payload if isinstance(payload, list) else [payload]
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        try:
            for piece in pieces:
                sock.sendall(piece)
                if gap:
                    time.sleep(gap)
        except OSError:
            pass  # the server may already have answered and closed
        return read_until_closed(sock, wait)


#: Whether the last :func:`read_until_closed` saw the server close (rather than time out).
LAST_CLOSED_BY_SERVER = [False]


def read_until_closed(
    sock: socket.socket, wait: float, done: Callable[[bytes], bool] | None = None
) -> bytes:
    LAST_CLOSED_BY_SERVER[0] = False
    chunks = []
    deadline = time.monotonic() + wait
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            LAST_CLOSED_BY_SERVER[0] = True
            break
        if not data:
            LAST_CLOSED_BY_SERVER[0] = True
            break
        chunks.append(data)
        if done is not None and done(b"".join(chunks)):
            break
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


def error_code_of(response: bytes) -> str:
    body = response.partition(b"\r\n\r\n")[2]
    return json.loads(body)["error"]["code"]


# -- control clients -------------------------------------------------------------------


class ControlStreams:
    """An SSE stream and a WS subscription held open for the whole test, checked per event."""

    def __init__(self, running: RunningTarget) -> None:
        self.running = running
        self.errors: list[str] = []
        self.seqs: dict[str, list[int]] = {"sse": [], "ws": []}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._sse, daemon=True),
            threading.Thread(target=self._ws, daemon=True),
        ]

    def __enter__(self) -> ControlStreams:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _sse(self) -> None:
        port = self.running.port("sse")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(
                    b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept: text/event-stream\r\n\r\n"  # noqa: E501 - corpus entries read best whole
                )
                parser = SseParser()
                head = b""
                while b"\r\n\r\n" not in head:
                    head += sock.recv(4096)
                head, _, rest = head.partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    self.errors.append(f"sse status {head[:40]!r}")
                    return
                buffer = rest
                while not self._stop.is_set():
                    # De-chunk: sizes in hex, then data.
                    while True:
                        line_end = buffer.find(b"\r\n")
                        if line_end < 0:
                            break
                        size = int(buffer[:line_end], 16)
                        if len(buffer) < line_end + 2 + size + 2:
                            break
                        chunk = buffer[line_end + 2 : line_end + 2 + size]
                        buffer = buffer[line_end + 2 + size + 2 :]
                        if size == 0:
                            self.errors.append("sse stream ended")
                            return
                        for event in parser.feed(chunk):
                            if event.type == "message":
                                self.seqs["sse"].append(json.loads(event.data)["seq"])
                    data = sock.recv(65536)
                    if not data:
                        self.errors.append("sse connection closed")
                        return
                    buffer += data
        except Exception as exc:
            self.errors.append(f"sse: {exc!r}")

    def _ws(self) -> None:
        try:
            ws = websocket.create_connection(self.running.url("ws", "/ws"), timeout=5)
            ws.send(json.dumps({"type": "subscribe", "since": None}))
            while not self._stop.is_set():
                message = json.loads(ws.recv())
                if message["type"] == "event":
                    self.seqs["ws"].append(message["seq"])
                elif message["type"] not in ("subscribed",):
                    self.errors.append(f"ws: unexpected {message}")
            ws.close()
        except Exception as exc:
            self.errors.append(f"ws: {exc!r}")

    def assert_clean(self, minimum_events: int) -> None:
        assert self.errors == []
        for protocol, seqs in self.seqs.items():
            assert len(seqs) >= minimum_events, (protocol, len(seqs))
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{protocol} gap or reorder"


def plain_requests_work(running: RunningTarget) -> None:
    for protocol in ("rest", "sse"):
        response = raw_exchange(
            running.port(protocol), b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status_of(response) == 200, protocol
    ws = websocket.create_connection(running.url("ws", "/ws"), timeout=5)
    ws.send(json.dumps({"type": "echo", "id": 1, "ts": 0, "payload": "ok"}))
    assert json.loads(ws.recv())["payload"] == "ok"
    ws.close()
    with grpc.insecure_channel(running.url("grpc")) as channel:
        reply = pb_grpc.LabStub(channel).Echo(pb.EchoRequest(id="1", payload=b"ok"), timeout=5)
        assert reply.payload == b"ok"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTarget]:
    factory = TargetFactory(tmp_path_factory.mktemp("corpus"))
    try:
        yield factory.start(
            ["rest", "sse", "ws", "grpc"],
            args=["--rate", "50", "--header-timeout", f"{HEADER_TIMEOUT_S}s", "--heartbeat", "1s"],
        )
    finally:
        factory.stop_all()


# -- HTTP (REST and SSE ports) -----------------------------------------------------------

_BIG = b"x" * 20_000
HTTP_CORPUS: list[tuple[str, bytes | list[bytes], set[int], str | None]] = [
    ("garbage", b"\x00\x01\x02\xff hello\r\n\r\n", {400}, "malformed_request"),
    ("bad request line", b"GET\r\n\r\n", {400}, "malformed_request"),
    ("bad version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", {400}, None),
    (
        "invalid utf-8 in path",
        b"GET /items/\xff\xfe\xfd HTTP/1.1\r\nHost: x\r\n\r\n",
        {400, 404},
        None,
    ),
    (
        "invalid utf-8 in header",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: \xff\xfe\r\nConnection: close\r\n\r\n",
        {200, 400},
        None,
    ),
    ("NUL in header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n", {400}, None),
    (
        "huge header",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + _BIG + b"\r\n\r\n",
        {431},
        "headers_too_large",
    ),
    (
        "many headers",
        b"GET /healthz HTTP/1.1\r\n"
        + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(400))
        + b"\r\n",
        {431},
        "headers_too_large",
    ),
    ("huge url", b"GET /" + _BIG + b" HTTP/1.1\r\nHost: x\r\n\r\n", {431}, "headers_too_large"),
    (
        "body over the limit",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{",  # noqa: E501 - corpus entries read best whole
        {413},
        "body_too_large",
    ),
    (
        "bad content-length",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        {400},
        None,
    ),
    (
        "conflicting framing",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",  # noqa: E501 - corpus entries read best whole
        {400},
        None,
    ),
    (
        "bad chunk size",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        {400},
        None,
    ),
    (
        "credentials in url",
        b"GET /healthz?access_token=s3cret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        {200, 400},
        None,
    ),
    (
        "truncated headers (times out)",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        {408},
        "request_timeout",
    ),
    (
        "slowloris",
        [
            b"G",
            b"ET /hea",
            b"lthz HTTP/1.1\r\n",
            b"Host: x\r\n",
            b"X-A: 1\r\n",
            b"X-B: 2\r\n",
            b"X-C: 3\r\n",
        ],
        {408},
        "request_timeout",
    ),
]
REST_ONLY = [
    (
        "invalid utf-8 in json body",
        b'POST /items HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{"a":"\xff\xfe"}',  # noqa: E501 - corpus entries read best whole
        {400},
        None,
    ),
    (
        "not json",
        b"POST /items HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{{{{{",  # noqa: E501 - corpus entries read best whole
        {400},
        None,
    ),
    (
        "wrong content type",
        b"POST /items HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",  # noqa: E501 - corpus entries read best whole
        {415},
        None,
    ),
    (
        "deep json",
        b"POST /items HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 20000\r\n\r\n"  # noqa: E501 - corpus entries read best whole
        + b"[" * 10000
        + b"]" * 10000,
        {400},
        None,
    ),
]
SSE_ONLY = [
    (
        "non-numeric Last-Event-ID",
        b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\nLast-Event-ID: abc\r\n\r\n",
        {400},
        "invalid_last_event_id",
    ),
    (
        "invalid utf-8 Last-Event-ID",
        b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\nLast-Event-ID: \xff\xfe\r\n\r\n",
        {400},
        "invalid_last_event_id",
    ),
    (
        "negative since",
        b"GET /stream?since=-5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        {400},
        None,
    ),
]


def test_http_malformed_input_is_refused_with_the_right_status_and_costs_only_itself(
    lab: RunningTarget,
) -> None:
    tried = 0
    wrong: list[tuple[str, str, bytes]] = []
    with ControlStreams(lab) as control:
        for protocol, corpus in (
            ("rest", HTTP_CORPUS + REST_ONLY),
            ("sse", HTTP_CORPUS + SSE_ONLY),
        ):
            slow = [case for case in corpus if case[2] == {408}]
            fast = [case for case in corpus if case[2] != {408}]
            for name, payload, statuses, code in fast:
                response = raw_exchange(lab.port(protocol), payload, wait=5)
                status = status_of(response) if response.startswith(b"HTTP/1.1 ") else None
                if status not in statuses:
                    wrong.append((protocol, name, response[:120]))
                elif status >= 400:
                    assert response.count(b"HTTP/1.1 ") == 1, (protocol, name)
                    if code and error_code_of(response) != code:
                        wrong.append((protocol, name, response[:120]))
                tried += 1
            # The slow cases wait for the header timeout: run them side by side.
            results: dict[str, bytes] = {}

            def slow_case(
                name: str,
                payload: bytes | list[bytes],
                protocol: str = protocol,
                results: dict[str, bytes] = results,
            ) -> None:
                gap = 0.4 if isinstance(payload, list) else 0.0
                results[name] = raw_exchange(
                    lab.port(protocol), payload, gap=gap, wait=HEADER_TIMEOUT_S + 6
                )

            threads = [
                threading.Thread(target=slow_case, args=(name, payload))
                for name, payload, _, _ in slow
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for name, _, statuses, code in slow:
                assert status_of(results[name]) in statuses, (protocol, name, results[name][:200])
                assert error_code_of(results[name]) == code
                tried += 1
            plain_requests_work(lab)
        time.sleep(0.5)
    assert wrong == []
    control.assert_clean(minimum_events=20)
    assert tried >= 38


# -- WebSocket -----------------------------------------------------------------------------


def ws_handshake(port: int, extra: bytes = b"", *, rcvbuf: int | None = None) -> socket.socket:
    return ws_handshake_and_rest(port, extra, rcvbuf=rcvbuf)[0]


def ws_handshake_and_rest(
    port: int, extra: bytes = b"", *, rcvbuf: int | None = None
) -> tuple[socket.socket, bytes]:
    """A raw WebSocket handshake; the socket and any bytes that came after the 101."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(upgrade_request(extra=extra))
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            break
        head += data
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    return sock, head.partition(b"\r\n\r\n")[2]


def close_code_from(data: bytes) -> int | None:
    """The code of the first close frame (opcode 8) in server-to-client bytes."""
    i = 0
    while i + 2 <= len(data):
        opcode = data[i] & 0x0F
        length = data[i + 1] & 0x7F
        offset = 2
        if length == 126:
            length = struct.unpack("!H", data[i + 2 : i + 4])[0]
            offset = 4
        elif length == 127:
            length = struct.unpack("!Q", data[i + 2 : i + 10])[0]
            offset = 10
        if opcode == 8:
            return (
                struct.unpack("!H", data[i + offset : i + offset + 2])[0] if length >= 2 else 1005
            )
        i += offset + length
    return None


WS_CORPUS: list[tuple[str, bytes, int | None]] = [
    ("reserved opcode 0x3", client_frame(0x3, b"x"), 1002),
    ("reserved opcode 0xB", client_frame(0xB, b""), 1002),
    ("unmasked client frame", client_frame(0x1, b'{"type":"ping"}', mask=False), 1002),
    ("RSV bit set", bytes([0xC1]) + client_frame(0x1, b"{}")[1:], 1002),
    ("fragmented control frame", client_frame(0x9, b"", fin=False), 1002),
    ("continuation without start", client_frame(0x0, b"x"), 1002),
    ("invalid utf-8 text", client_frame(0x1, b'{"a":"\xff\xfe"}'), 1007),
    ("not json", client_frame(0x1, b"hello"), 1007),
    ("json but not an object", client_frame(0x1, b"[1,2]"), 1007),
    ("binary frame", client_frame(0x2, b"\x00\x01"), 1003),
    ("over max size", client_frame(0x1, b"x" * 10, declared=2 * 1024 * 1024), 1009),
    ("truncated frame then EOF", client_frame(0x1, b"x" * 10, declared=100), None),
    ("close with invalid code", client_frame(0x8, struct.pack("!H", 999)), 1002),
]


def test_ws_malformed_frames_close_with_the_right_code_and_cost_only_their_connection(
    lab: RunningTarget,
) -> None:
    port = lab.port("ws")
    with ControlStreams(lab) as control:
        for name, frame, expected in WS_CORPUS:
            sock = ws_handshake(port)
            with sock:
                sock.sendall(frame)
                if expected is None:
                    sock.shutdown(socket.SHUT_WR)
                data = read_until_closed(sock, 3, lambda d: close_code_from(d) is not None)
            assert close_code_from(data) == expected, (name, data[:80])
        # A broken handshake is refused with 400 before any upgrade.
        response = raw_exchange(
            port,
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",  # noqa: E501 - corpus entries read best whole
        )
        assert status_of(response) == 400
        response = raw_exchange(port, b"GET /ws?token=s3cret HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(response) == 400
        plain_requests_work(lab)
        time.sleep(0.5)
    control.assert_clean(minimum_events=10)


# -- gRPC ----------------------------------------------------------------------------------


def h2_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    i = 0
    while i + 9 <= len(data):
        length = int.from_bytes(data[i : i + 3], "big")
        frames.append((data[i + 3], data[i + 9 : i + 9 + length]))
        i += 9 + length
    return frames


GOAWAY = 0x7
GRPC_CORPUS: list[tuple[str, bytes]] = [
    (
        "garbage instead of the preface",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),
    ),
    ("preface then garbage frames", H2_PREFACE + os.urandom(256)),
    (
        "preface then a frame longer than max size",
        H2_PREFACE + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01" + b"x" * 64,
    ),
    # Not here: DATA on stream 0 and HEADERS on an even stream id. grpc-core ignores them
    # and keeps the (idle) connection, which its keepalive reaps; other calls are unaffected.
    (
        "HEADERS with bad HPACK",
        H2_PREFACE
        + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        + b"\x00\x00\x05\x01\x05\x00\x00\x00\x01\xff\xff\xff\xff\xff",
    ),
]


def test_grpc_port_refuses_http2_garbage_and_plain_http1_without_hurting_calls(
    lab: RunningTarget,
) -> None:
    port = lab.port("grpc")
    with grpc.insecure_channel(lab.url("grpc")) as channel:
        stub = pb_grpc.LabStub(channel)
        stream = stub.Subscribe(pb.SubscribeRequest(since=0), timeout=30)
        before = [next(stream) for _ in range(5)]
        for name, payload in GRPC_CORPUS:
            data = raw_exchange(port, payload, wait=3)
            # The server closes the connection (within the wait: not held open), with a
            # GOAWAY carrying an error code when the client got far enough to speak HTTP/2.
            frames = dict(h2_frames(data))
            assert LAST_CLOSED_BY_SERVER[0] or GOAWAY in frames, name
            if GOAWAY in frames:
                error_code = int.from_bytes(frames[GOAWAY][4:8], "big")
                assert error_code != 0, name  # NO_ERROR would hide the refusal
        # Plain HTTP/1.1 on the gRPC port: no HTTP/1 success answer, connection closed.
        data = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", wait=3)
        assert not data.startswith(b"HTTP/1.1 2"), data[:80]
        assert LAST_CLOSED_BY_SERVER[0] or GOAWAY in dict(h2_frames(data))
        reply = stub.Echo(pb.EchoRequest(id="7", payload=b"still fine"), timeout=5)
        assert reply.payload == b"still fine"
        after = [next(stream) for _ in range(5)]
        stream.cancel()
    assert before and after
    plain_requests_work(lab)
