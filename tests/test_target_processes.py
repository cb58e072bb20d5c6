"""Several target processes per protocol on one port, sharing one feed (the local lab).

When a protocol's connections need more than one process's file limit, the lab starts
several processes on the protocol's port (``SO_REUSEPORT``) with one Redis feed. Pinned
here with real processes, a real redis-server and real clients: the kernel spreads the
clients over the processes, each process's ``/stats`` counts its own, and a client that
reconnects onto a different process resumes with no gap and no duplicate. Which process
holds a connection is read from the kernel's socket table (psutil), not guessed.

The connection count the lab is given is "one more than one process holds" under this
machine's file limit, whatever that limit is; the test then opens only a few dozen.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
import urllib.request
from pathlib import Path

import psutil
from websockets.sync.client import connect as ws_connect

from wirelab.capacity import target_max_connections
from wirelab.exitcodes import EXIT_GENERATOR_BOUND, EXIT_OK
from wirelab.lab.local import LocalLab, TargetSpec
from wirelab.limits import open_files_limit
from wirelab.sse_parser import SseParser

from .file_limits import run_limited

STREAMS = 24
EVENTS = 3


def stats(lab: LocalLab, admin_url: str) -> dict:
    request = urllib.request.Request(f"{admin_url}/stats")
    request.add_header("Authorization", f"Bearer {lab.admin_token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def server_pid(lab: LocalLab, client_port: int) -> int:
    """The target process holding the server end of the connection from ``client_port``."""
    for target in lab.target_processes:
        process = psutil.Process(target.process.pid)
        for connection in process.net_connections(kind="tcp"):
            if connection.raddr and connection.raddr.port == client_port:
                return target.process.pid
    raise AssertionError(f"no target process holds the connection from port {client_port}")


class SseStream:
    """One SSE stream read event by event (``Last-Event-ID`` on a resume)."""

    def __init__(self, port: int, last_id: int | None = None) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
        self.connection.request("GET", "/stream", headers=headers)
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        self.client_port = self.connection.sock.getsockname()[1]
        self.parser = SseParser()
        self.pending: list[int] = []

    def next_seqs(self, count: int) -> list[int]:
        while len(self.pending) < count:
            for event in self.parser.feed(self.response.read1(65536)):
                if event.type == "message":
                    self.pending.append(int(event.id))
        taken, self.pending = self.pending[:count], self.pending[count:]
        return taken

    def close(self) -> None:
        self.connection.close()


def test_sse_and_ws_clients_spread_over_processes_on_one_port_and_resume_on_another(
    tmp_path: Path,
) -> None:
    one_process = target_max_connections(open_files_limit())
    spec = TargetSpec(
        protocols=["sse", "ws"],
        rate=40,
        connections={"sse": one_process + 1, "ws": one_process + 1},
    )
    lab = LocalLab(tmp_path)
    stack = contextlib.ExitStack()
    try:
        urls = lab.start_targets(spec)
        sse_port = int(urls["sse"].rsplit(":", 1)[1])
        ws_url = urls["ws"] + "/ws"
        ws_port = int(urls["ws"].rsplit(":", 1)[1])

        # Two processes per protocol, each listening on the protocol's one port.
        assert sorted(t.protocols for t in lab.target_processes) == [("sse",)] * 2 + [("ws",)] * 2
        assert lab.redis is not None and lab.redis.alive
        for target in lab.target_processes:
            port = sse_port if target.protocols == ("sse",) else ws_port
            listening = {
                c.laddr.port
                for c in psutil.Process(target.process.pid).net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN
            }
            assert port in listening, (target.protocols, listening)

        sse_streams = [SseStream(sse_port) for _ in range(STREAMS)]
        # Connected only: each subscribes when its turn to read comes, below.
        websockets = [stack.enter_context(ws_open(ws_url)) for _ in range(STREAMS)]

        first_pids = {
            "sse": [server_pid(lab, stream.client_port) for stream in sse_streams],
            "ws": [server_pid(lab, ws.socket.getsockname()[1]) for ws in websockets],
        }
        # The kernel spread them: every process holds some, and says so in its /stats.
        for protocol, pids in first_pids.items():
            targets = [t for t in lab.target_processes if t.protocols == (protocol,)]
            active = {
                t.process.pid: stats(lab, t.admin_url)["targets"][protocol]["active_connections"]
                for t in targets
            }
            assert active == {t.process.pid: pids.count(t.process.pid) for t in targets}
            assert all(count > 0 for count in active.values()), (protocol, active)

        # Every stream reads a few events, leaves, and resumes after its last one.
        moved = {"sse": 0, "ws": 0}
        for index, stream in enumerate(sse_streams):
            seen = stream.next_seqs(EVENTS)
            stream.close()
            again = SseStream(sse_port, last_id=seen[-1])
            resumed = again.next_seqs(EVENTS)
            assert resumed == list(range(seen[-1] + 1, seen[-1] + 1 + EVENTS)), (seen, resumed)
            moved["sse"] += server_pid(lab, again.client_port) != first_pids["sse"][index]
            again.close()
        for index, ws in enumerate(websockets):
            seen = ws_events(ws, EVENTS, since=None)
            ws.close()
            with ws_open(ws_url) as again:
                resumed = ws_events(again, EVENTS, since=seen[-1])
                assert resumed == list(range(seen[-1] + 1, seen[-1] + 1 + EVENTS)), resumed
                pid = server_pid(lab, again.socket.getsockname()[1])
                moved["ws"] += pid != first_pids["ws"][index]
        # Some of them did come back on the other process (each does with odds of one in two).
        assert moved["sse"] > 0 and moved["ws"] > 0, moved
    finally:
        stack.close()
        lab.close()
    assert not lab.redis.alive
    assert all(not target.process.alive for target in lab.target_processes)


def ws_open(url: str):
    return ws_connect(url, subprotocols=["wirelab.v1"], ping_interval=None, close_timeout=2)


def ws_events(ws, count: int, *, since: int | None) -> list[int]:
    """Subscribe (live, or after ``since``) and read ``count`` events."""
    ws.send(json.dumps({"type": "subscribe", "since": since}))
    assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
    seqs: list[int] = []
    deadline = time.monotonic() + 10
    while len(seqs) < count and time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=10))
        if message.get("type") == "event":
            seqs.append(message["seq"])
    return seqs


def test_one_process_serves_every_protocol_while_their_connections_fit_one(
    tmp_path: Path,
) -> None:
    lab = LocalLab(tmp_path)
    try:
        lab.start_targets(TargetSpec(protocols=["sse", "ws"], connections={"sse": 10, "ws": 10}))
        assert [t.protocols for t in lab.target_processes] == [("sse", "ws")]
        assert lab.target_processes[0].admin_port is None
        assert lab.redis is None  # the in-memory feed, as the lab always ran
    finally:
        lab.close()


def test_wirelab_run_gives_a_protocol_as_many_processes_as_its_users_need_under_the_file_limit(
    tmp_path: Path,
) -> None:
    """Under a file limit of 1,000 (set on the run), 900 SSE users need two processes on the
    SSE port and the 100 WebSocket users one more, all on one Redis feed; the run holds them
    all with nothing lost."""
    wide = {
        "name": "wide", "duration": "8s", "workers": 2, "spawn_rate": 500,
        "users": {"sse": 900, "ws_feed": 100}, "feed": {"rate": 5},
        "thresholds": ["sse:lost==0", "ws:lost==0", "*:duplicates==0"],
    }  # fmt: skip
    result, reports = run_limited(tmp_path, wide, 1000, 1000)
    # Thresholds held; a ramp of 500 connects/s on a crowded 2-core machine may also leave
    # the generator bound (exit 4), which is the verdict's business, not this test's.
    assert result.returncode in (EXIT_OK, EXIT_GENERATOR_BOUND), (
        result.stdout[-3000:] + result.stderr[-3000:]
    )
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    logs = sorted(p.name for p in (run_dir / "logs").glob("target*.log"))
    assert logs == ["target-sse-1.log", "target-sse-2.log", "target-ws-1.log"], logs
    assert (run_dir / "redis").is_dir()
    summary = json.loads((run_dir / "summary.json").read_text())
    streams = {row["protocol"]: row for row in summary["streams"]}
    assert streams["sse"]["connected_peak"] == 900 and streams["ws"]["connected_peak"] == 100
    assert all(row["connect_failures"] == 0 and row["gaps"] == 0 for row in streams.values())
