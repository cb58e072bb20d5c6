"""Bytes on the wire, counted by the kernel at the server's sockets (``ss -ti``).

Every established TCP connection carries ``bytes_received`` (client → server) and
``bytes_sent`` (server → client) in its ``tcp_info``: TCP payload, so HTTP headers, chunked
encoding, WebSocket frames, HTTP/2 frames and TLS records (if any) are all in, and TCP/IP
headers are not. Nothing sits in the path, so the protocols are measured as they run; the
cost is that a connection closed between two samples keeps only what the last sample saw
(push and keep-alive connections live for the whole run; per-request connections are not
counted here).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

from .rawws import client_frame, frame_header, upgrade_request

__all__ = ["ConnectionBytes", "WireCounter", "parse_ss", "snapshot", "ws_frame_overhead"]

_ADDR = re.compile(r"^\S+\s+\S+\s+(\S+)\s+(\S+)")
_SENT = re.compile(r"\bbytes_sent:(\d+)")
_RECEIVED = re.compile(r"\bbytes_received:(\d+)")


@dataclass(slots=True)
class ConnectionBytes:
    """One connection as the server sees it."""

    local: str
    peer: str
    sent: int = 0
    received: int = 0


def parse_ss(text: str) -> dict[tuple[str, str], ConnectionBytes]:
    """Parse ``ss -tinH`` output: each connection is an address line then an info line."""
    found: dict[tuple[str, str], ConnectionBytes] = {}
    current: ConnectionBytes | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            match = _ADDR.match(line)
            current = None
            if match:
                current = ConnectionBytes(match.group(1), match.group(2))
                found[(current.local, current.peer)] = current
            continue
        if current is None:
            continue
        if sent := _SENT.search(line):
            current.sent = int(sent.group(1))
        if received := _RECEIVED.search(line):
            current.received = int(received.group(1))
    return found


def _idle_priority() -> None:
    """Put the calling thread, and every process it starts from now on, in the idle
    scheduling class (a child inherits its creating thread's policy).

    A sample takes a few ms of CPU (``ss`` dumping every socket, then the parse) on a core
    where a target or a generator is being measured; at normal priority a request that
    arrives meanwhile waits for it, and those waits land in the p99. A ``SCHED_IDLE`` task
    is preempted the moment anything else on its core wakes.
    """
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def snapshot(port: int) -> dict[tuple[str, str], ConnectionBytes]:
    """Every established connection whose local (server) port is ``port``."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_ss(out)


@dataclass
class WireCounter:
    """Samples a server port's connections until stopped; keeps each one's largest counts.

    Use as a context manager around the traffic; read :attr:`sent`, :attr:`received` and
    :attr:`connections` afterwards.
    """

    port: int
    interval: float = 0.25
    seen: dict[tuple[str, str], ConnectionBytes] = field(default_factory=dict)
    max_open: int = 0
    #: ``(monotonic s, sent so far, received so far, connections open)`` per sample.
    timeline: list[tuple[float, int, int, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> int:
        """Take one sample now; returns the number of connections open."""
        current = snapshot(self.port)
        for key, conn in current.items():
            known = self.seen.get(key)
            if known is None:
                self.seen[key] = conn
            else:
                known.sent = max(known.sent, conn.sent)
                known.received = max(known.received, conn.received)
        self.max_open = max(self.max_open, len(current))
        self.timeline.append((time.monotonic(), self.sent, self.received, len(current)))
        return len(current)

    def steady(self, min_open: int) -> tuple[float, int, int] | None:
        """Seconds, bytes sent and received between the first and last sample with at least
        ``min_open`` connections open: the steady state, without handshakes and teardown."""
        window = [sample for sample in self.timeline if sample[3] >= min_open]
        if len(window) < 2:
            return None
        first, last = window[0], window[-1]
        return last[0] - first[0], last[1] - first[1], last[2] - first[2]

    def _run(self) -> None:
        # This thread and the ``ss`` it runs: the samples between the first and the last.
        _idle_priority()
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> WireCounter:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="wire-counter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    @property
    def sent(self) -> int:
        """Server → client bytes over every connection seen."""
        return sum(conn.sent for conn in self.seen.values())

    @property
    def received(self) -> int:
        """Client → server bytes over every connection seen."""
        return sum(conn.received for conn in self.seen.values())

    @property
    def connections(self) -> int:
        return len(self.seen)


def ws_frame_overhead(host: str, port: int, *, frames: int = 50, timeout: float = 10.0) -> float:
    """Bytes of WebSocket framing per event the target sends, read off the socket exactly.

    Opens a raw connection to ``/ws``, subscribes from seq 0 (the feed replays what it
    holds, so no waiting for the publish rate), and walks the first ``frames`` event frames
    the server sends: each frame's header (opcode/length bytes, extended length, no mask:
    servers do not mask) against its payload. Returns the mean header bytes per frame,
    which RFC 6455 puts at 2 for payloads up to 125 bytes, 4 up to 64 KiB, 10 beyond.

    Raises:
        TimeoutError: fewer than ``frames`` events arrived within ``timeout``.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(upgrade_request(host))
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += _recv(sock)
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"no WebSocket upgrade: {head[:80]!r}")
        sock.sendall(client_frame(0x1, b'{"type":"subscribe","since":0}'))
        headers = events = 0
        deadline = time.monotonic() + timeout
        while events < frames:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{events} of {frames} event frames in {timeout:g} s")
            frame = _next_frame(buffer)
            if frame is None:
                buffer += _recv(sock)
                continue
            header_len, payload, buffer = frame
            if b'"type":"event"' in payload:
                headers += header_len
                events += 1
    return headers / frames


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the server closed the connection")
    return data


def _next_frame(buffer: bytes) -> tuple[int, bytes, bytes] | None:
    """``(header bytes, payload, rest)`` of the first whole frame in ``buffer``, or None."""
    found = frame_header(buffer)
    if found is None or len(buffer) < sum(found):
        return None
    header, length = found
    return header, buffer[header : header + length], buffer[header + length :]
