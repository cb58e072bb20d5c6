"""Faults in the lab itself: each is handled as docs/failure-behaviour.md says.

- a worker killed with -9 mid-run: ``tests/test_run.py::
  test_a_worker_killed_mid_run_is_reported_and_earlier_counts_are_kept`` (the run goes on,
  the report names the lost worker, counts it already reported are kept; exit 0/1);
- the Locust master killed mid-run: the run stops with exit 3 and an INCOMPLETE line, the
  workers exit, and no process the run started is left behind (checked with psutil);
- InfluxDB unreachable at start: the run completes, the sink's outage is counted in the
  summary (nothing silently lost), and the exit code is the thresholds' verdict (0/1);
- a target replica killed with -9: its clients reconnect to another replica and resume
  from their last seq; the events they had are kept and nothing goes missing silently;
- Redis stopped and restarted under a Redis-backed feed: the targets keep serving, streams
  come back, and a client never sees a silent gap (every missing seq is declared by a reset).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import websocket

from tests.fixtures.redis import _answers_ping
from tests.fixtures.targets import TargetFactory
from tests.test_run import PROTOCOLS, only_run_dir, url_args
from wirelab.processes import ManagedProcess, free_port


def start_run(tmp_path: Path, *args: str) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "wirelab", "run", "--report-dir", str(tmp_path / "reports"),
        "--no-progress", *args,
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_children(process: subprocess.Popen, predicate, timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = psutil.Process(process.pid).children(recursive=True)
        if predicate(children):
            return children
        time.sleep(0.25)
    raise AssertionError("the run's processes never appeared")


def is_worker(child: psutil.Process) -> bool:
    try:
        return "--worker" in child.cmdline()
    except psutil.Error:
        return False


def is_master(child: psutil.Process) -> bool:
    try:
        cmdline = child.cmdline()
    except psutil.Error:
        return False
    return "locust" in cmdline and "--master" in cmdline


def test_master_killed_mid_run_stops_with_exit_3_and_leaves_no_process_behind(
    targets: TargetFactory, tmp_path: Path
) -> None:
    running = targets.start(PROTOCOLS, args=["--rate", "20"])
    process = start_run(
        tmp_path, "--scenario", "smoke", "--duration", "30s", "--workers", "2", *url_args(running)
    )
    try:
        children = wait_for_children(
            process, lambda cs: sum(map(is_worker, cs)) == 2 and any(map(is_master, cs)), 40
        )
        time.sleep(3)  # let the workers report for a while
        children = psutil.Process(process.pid).children(recursive=True)
        (master,) = [child for child in children if is_master(child)]
        killed_at = time.monotonic()
        master.send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=60)
        detected_s = time.monotonic() - killed_at
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 3, output[-3000:]
    assert "INCOMPLETE: the Locust master exited with code -9" in output
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], [child.cmdline() for child in alive]
    summary = json.loads((only_run_dir(tmp_path / "reports") / "summary.json").read_text())
    assert summary["exit_code"] == 3
    print(f"\nmaster killed: run ended {detected_s:.1f} s later with exit 3; no process left")


def test_influxdb_unreachable_at_start_the_run_completes_and_reports_the_outage(
    targets: TargetFactory, tmp_path: Path
) -> None:
    running = targets.start(["ws"], args=["--rate", "20"])
    dead = f"influxdb://127.0.0.1:{free_port()}/wirelab"
    process = start_run(
        tmp_path, "--scenario", "smoke", "--protocols", "ws", "--duration", "5s",
        "--workers", "1", "--sink", dead, *url_args(running),
    )  # fmt: skip
    output, _ = process.communicate(timeout=120)
    assert process.returncode in (0, 1), output[-3000:]
    summary = json.loads((only_run_dir(tmp_path / "reports") / "summary.json").read_text())
    assert sum(row["count"] for row in summary["requests"]) > 0
    (influx,) = [row for row in summary["sinks"] if row["kind"] == "influx_v1"]
    (local,) = [row for row in summary["sinks"] if row["kind"] == "file"]
    # Nothing silently lost: every point the local file got is either written or counted
    # as dropped for the dead sink, and the outage is on record.
    assert influx["written"] == 0
    assert influx["dropped"] + influx["buffered"] == local["written"] > 0
    assert influx["retries"] > 0
    assert influx["outages"] or influx["last_error"]
    shown = {key: influx[key] for key in ("retries", "dropped", "last_error")}
    print(f"\ninflux unreachable: {json.dumps(shown)[:300]}")


class ResumingWsClient:
    """A feed subscriber that reconnects and resumes from its last seq, as the users do."""

    def __init__(self, *urls: str) -> None:
        #: Tried in turn: a client of a killed replica goes to the next (its balancer's job).
        self.urls = list(urls)
        self.connects: list[str] = []
        self.seqs: list[int] = []
        self.resets: list[dict] = []
        self.closes: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ResumingWsClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                url = self.urls[len(self.closes) % len(self.urls)]
                ws = websocket.create_connection(url, timeout=3)
                self.connects.append(url)
                since = self.seqs[-1] if self.seqs else None
                ws.send(json.dumps({"type": "subscribe", "since": since}))
                while not self._stop.is_set():
                    message = json.loads(ws.recv())
                    if message["type"] == "event":
                        self.seqs.append(message["seq"])
                    elif message["type"] == "reset":
                        self.resets.append(message)
                ws.close()
            except Exception as exc:
                self.closes.append(repr(exc)[:120])
                time.sleep(0.3)

    def silent_gaps(self) -> list[tuple[int, int]]:
        """Jumps in seq that no reset declared."""
        declared = {(reset["since"], reset["first"]) for reset in self.resets}
        gaps = []
        for previous, seq in zip(self.seqs, self.seqs[1:], strict=False):
            if seq != previous + 1 and (previous, seq) not in declared:
                gaps.append((previous, seq))
        return gaps


def test_redis_stopped_and_restarted_under_the_feed_gives_no_silent_gap(
    targets: TargetFactory, tmp_path: Path
) -> None:
    port = free_port()
    argv = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(tmp_path), "--daemonize", "no",
    ]  # fmt: skip
    redis = ManagedProcess(argv, name="redis-fault", log_path=tmp_path / "redis.log").start()
    try:
        redis.wait_ready(lambda: _answers_ping("127.0.0.1", port), timeout=15)
        running = targets.start(
            ["ws"], redis_url=f"redis://127.0.0.1:{port}/0", args=["--rate", "20"]
        )
        with ResumingWsClient(running.url("ws", "/ws")) as client:
            time.sleep(3)
            before = len(client.seqs)
            redis.stop(grace=5)
            time.sleep(3)
            during = len(client.seqs)
            redis.start()
            redis.wait_ready(lambda: _answers_ping("127.0.0.1", port), timeout=15)
            deadline = time.monotonic() + 15
            while len(client.seqs) < during + 40 and time.monotonic() < deadline:
                time.sleep(0.2)
        after = len(client.seqs)
        print(
            f"\nredis fault: events before {before}, during outage {during - before}, after "
            f"{after - during}; resets {client.resets[:3]}; disconnects {client.closes[:3]}"
        )
        assert before > 20
        assert after > during, "the stream did not come back after Redis did"
        assert client.silent_gaps() == []
        assert running.process.alive, "the target died with Redis"
    finally:
        targets.stop_all()  # before Redis, so their feed closes against a live server
        redis.stop(grace=5)


def test_a_replica_killed_with_9_its_clients_resume_on_another_without_a_silent_gap(
    targets: TargetFactory, redis_url: str
) -> None:
    first = targets.start(["ws"], redis_url=redis_url, args=["--rate", "20"])
    second = targets.start(["ws"], redis_url=redis_url, args=["--rate", "0"])
    with ResumingWsClient(first.url("ws", "/ws"), second.url("ws", "/ws")) as client:
        time.sleep(2)
        before = len(client.seqs)
        os.kill(first.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # The publisher died with the first replica: start one on the second, as a
        # Deployment would bring a new pod up, so the feed moves on.
        third = targets.start(["ws"], redis_url=redis_url, args=["--rate", "20"])
        deadline = time.monotonic() + 15
        while len(client.seqs) < before + 40 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert third.process.alive
    assert before > 10
    assert len(client.seqs) > before, (client.connects, client.closes, client.resets)
    assert client.silent_gaps() == []
    assert second.url("ws", "/ws") in client.connects
    print(
        f"\nreplica killed: {before} events before, {len(client.seqs) - before} after; "
        f"reconnected to {client.connects[1:]} ({time.monotonic() - killed_at:.1f} s window)"
    )
