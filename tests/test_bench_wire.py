"""Bytes on the wire as the kernel counts them at the server's sockets."""

from __future__ import annotations

import os
import socket

import pytest

from wirelab_bench.wire import (
    WireCounter,
    _next_frame,
    parse_ss,
    snapshot,
    ws_frame_overhead,
)

SS_OUTPUT = """\
0      0      127.0.0.1:8080 127.0.0.1:51234
\t cubic wscale:7,7 rto:204 bytes_sent:300 bytes_acked:300 bytes_received:1000 segs_out:2
0      0      127.0.0.1:8080 127.0.0.1:51236
\t cubic wscale:7,7 rto:204 segs_out:1
"""


def test_parse_ss_reads_each_connection_with_its_byte_counters():
    found = parse_ss(SS_OUTPUT)
    assert set(found) == {
        ("127.0.0.1:8080", "127.0.0.1:51234"),
        ("127.0.0.1:8080", "127.0.0.1:51236"),
    }
    first = found[("127.0.0.1:8080", "127.0.0.1:51234")]
    assert (first.sent, first.received) == (300, 1000)
    idle = found[("127.0.0.1:8080", "127.0.0.1:51236")]
    assert (idle.sent, idle.received) == (0, 0)


def _exchange(up: bytes, down: bytes) -> tuple[socket.socket, socket.socket, socket.socket, int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    client.sendall(up)
    received = b""
    while len(received) < len(up):
        received += server.recv(65536)
    server.sendall(down)
    got = b""
    while len(got) < len(down):
        got += client.recv(65536)
    return listener, client, server, port


def test_counter_sees_exactly_the_bytes_of_a_known_exchange_each_way():
    request = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" * 3
    listener, client, server, port = _exchange(request, response)
    try:
        with WireCounter(port, interval=0.05) as counter:
            pass
        assert counter.connections == 1
        assert counter.received == len(request)  # client -> server
        assert counter.sent == len(response)  # server -> client
    finally:
        for sock in (client, server, listener):
            sock.close()


def test_counter_keeps_a_connection_s_bytes_after_it_closes():
    listener, client, server, port = _exchange(b"a" * 2000, b"b" * 70)
    counter = WireCounter(port)
    try:
        counter.sample()
        client.close()
        server.close()
        assert snapshot(port) == {}
        counter.sample()
        assert (counter.received, counter.sent) == (2000, 70)
    finally:
        listener.close()


def test_sampling_runs_at_idle_priority_so_measured_processes_never_wait_for_it():
    # At normal priority the sampling (ss + parse, a few ms each time) doubled the p99 of
    # the requests it ran beside; SCHED_IDLE yields the core to anything that wakes, and
    # the ``ss`` processes the thread starts inherit the class.
    listener, client, server, port = _exchange(b"x", b"y")
    try:
        with WireCounter(port, interval=0.05) as counter:
            assert counter._thread is not None
            assert os.sched_getscheduler(counter._thread.native_id) == os.SCHED_IDLE
        assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the caller keeps its class
        assert (counter.received, counter.sent) == (1, 1)
    finally:
        for sock in (client, server, listener):
            sock.close()


def test_steady_window_spans_first_to_last_sample_with_every_client_connected():
    counter = WireCounter(0)
    counter.timeline = [
        (0.0, 0, 0, 1),  # still connecting: left out
        (1.0, 100, 10, 2),
        (2.0, 300, 30, 2),
        (3.0, 500, 50, 2),
        (3.5, 520, 52, 1),  # tearing down: left out
    ]
    assert counter.steady(min_open=2) == (2.0, 400, 40)
    assert counter.steady(min_open=3) is None


def test_frame_walker_reads_each_header_size_of_rfc_6455():
    small = bytes([0x81, 5]) + b"hello"
    medium = bytes([0x81, 126]) + (300).to_bytes(2, "big") + b"x" * 300
    large = bytes([0x82, 127]) + (70_000).to_bytes(8, "big") + b"y" * 70_000
    assert _next_frame(small + b"rest") == (2, b"hello", b"rest")
    assert _next_frame(medium)[0] == 4
    assert _next_frame(large)[0] == 10
    assert _next_frame(medium[:100]) is None  # a frame not yet whole


@pytest.mark.parametrize(("payload", "header"), [(32, 2.0), (400, 4.0)])
def test_ws_frame_overhead_reads_the_real_target_s_frames(targets, payload, header):
    """Events under 126 bytes of JSON get a 2-byte header, larger ones 4 (RFC 6455)."""
    running = targets.start("ws", args=["--rate", "200", "--payload-size", str(payload)])
    assert ws_frame_overhead("127.0.0.1", running.port(), frames=20) == header
