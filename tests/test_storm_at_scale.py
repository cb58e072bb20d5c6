"""A few thousand streams reset at once come back whole: 0 lost, 0 failed handshakes.

Through ``wirelab run`` with the scenario written here: 800 WebSocket and 1,600 SSE
clients on two workers, two replicas per protocol behind HAProxy with one Redis feed,
every connection dropped at once in the middle, and the clients back with full jitter
over 6 s (400 reconnects a second onto four target processes that are fanning the feed
out to everyone already back). Locust puts each user class on one worker; the WebSocket
client costs the most CPU per connect, so it gets fewer, lest its worker starve on a
loaded machine and miss its heartbeats to the master. Judged on counts only: every client
that was cut reconnected and resumed, no event was lost, duplicated or skipped, no
handshake failed, and the targets accepted each of them again after the drop.

On a machine so loaded that the ramp has not finished at the drop, the clients still
connecting are not cut; the storm must still have cut thousands.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from wirelab.exitcodes import EXIT_GENERATOR_BOUND, EXIT_OK
from wirelab.metrics.results import load_results

from .file_limits import run_limited

USERS = {"ws_feed": 800, "sse": 1600}
SCENARIO = {
    "name": "storm-at-scale",
    "duration": "30s",
    "workers": 2,
    "spawn_rate": 1200,
    "replicas": 2,
    "users": USERS,
    "feed": {"rate": 5},
    "reconnect": "full_jitter:base=6,cap=6",
    "actions": [{"at": "10s", "do": "drop_connections", "service": "all"}],
    "thresholds": ["sse:lost==0", "ws:lost==0", "*:duplicates==0"],
}


def test_thousands_of_streams_dropped_at_once_resume_with_nothing_lost_and_no_failed_handshake(
    tmp_path: Path,
) -> None:
    path = tmp_path / "storm.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    reports = tmp_path / "reports"
    result = subprocess.run(
        [sys.executable, "-m", "wirelab", "run", "--scenario", str(path),
         "--report-dir", str(reports), "--no-progress"],
        capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    log = result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    # Thresholds held; 2,400 streams and their storm on two shared cores may also leave the
    # generator bound (exit 4): the verdict's business, not this test's.
    assert result.returncode in (EXIT_OK, EXIT_GENERATOR_BOUND), log
    assert summary["workers"]["lost"] == [], summary["workers"]

    streams = {row["protocol"]: row for row in summary["streams"]}
    for protocol, key in (("ws", "ws_feed"), ("sse", "sse")):
        row = streams[protocol]
        assert row["connected_peak"] == USERS[key], row
        # Every client the drop cut came back and resumed, and no handshake failed. (A
        # client may also leave on purpose, e.g. a stream silent past its read timeout on a
        # starved worker, and come back: a reconnect without a counted disconnect.)
        assert row["reconnects"] >= row["disconnects"], row
        assert row["connect_failures"] == 0, row
        for counter in ("gaps", "missing", "duplicates", "out_of_order", "resets"):
            assert row[counter] == 0, (counter, row)
        assert row["delivered"] > 0, row
    cut = streams["ws"]["disconnects"] + streams["sse"]["disconnects"]
    assert cut >= 2000, cut

    # The targets saw the storm: every client accepted again after the drop.
    results = load_results(run_dir)
    (drop,) = [note for note in results.annotations if note["kind"] == "storm"]
    dropped_at_ns = int(drop["at"] * 1e9)
    after = sum(
        point.fields["accepted"]
        for point in results.series("target_accepts")
        if point.time_ns >= dropped_at_ns
    )
    assert after >= cut, (after, cut)
    action = summary["deploy"]["actions"][0]
    assert action["action"] == "drop_connections" and action["ok"], action


#: Under a file limit of 1,000 one target process holds 822 clients: 1,200 SSE users need two
#: SSE processes on one port and, as the scenario kills one, a spare; the 300 WebSocket users
#: one of their own.
PROCESS_LAB_USERS = {"sse": 1200, "ws_feed": 300}
PROCESS_LAB = {
    "name": "storm-on-processes",
    "duration": "30s",
    "workers": 2,
    "spawn_rate": 1000,
    "users": PROCESS_LAB_USERS,
    "feed": {"rate": 5},
    "reconnect": "full_jitter:base=3,cap=3",
    "actions": [
        {"at": "8s", "do": "drop_connections", "service": "all"},
        {"at": "17s", "do": "kill", "service": "sse", "count": 1},
    ],
    "thresholds": ["sse:lost==0", "ws:lost==0", "*:duplicates==0"],
}


def test_storms_and_kills_run_on_the_processes_sharing_a_port_with_no_proxy(
    tmp_path: Path,
) -> None:
    """A scenario whose only actions are a storm and a kill runs on the lab's processes
    (several per port, one Redis feed) with no HAProxy: every connection is cut at once,
    then one of the three SSE processes is killed and started again; every client comes back
    and resumes with nothing lost, duplicated or skipped and no failed handshake."""
    result, reports = run_limited(tmp_path, PROCESS_LAB, 1000, 1000, timeout=150)
    log = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode in (EXIT_OK, EXIT_GENERATOR_BOUND), log
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    logs = sorted(p.name for p in (run_dir / "logs").glob("*.log"))
    assert "haproxy.log" not in logs and not (run_dir / "haproxy").exists(), logs
    targets = [name for name in logs if name.startswith("target-")]
    assert targets == [
        "target-sse-1.log", "target-sse-2.log", "target-sse-3.log", "target-ws-1.log"
    ], logs  # fmt: skip
    assert "lab: sse x3, ws x1 target processes" in result.stdout, log

    summary = json.loads((run_dir / "summary.json").read_text())
    actions = summary["deploy"]["actions"]
    assert [(a["action"], a["ok"]) for a in actions] == [
        ("drop_connections", True),
        ("kill", True),
    ], actions
    streams = {row["protocol"]: row for row in summary["streams"]}
    for protocol, key in (("ws", "ws_feed"), ("sse", "sse")):
        row = streams[protocol]
        assert row["connected_peak"] == PROCESS_LAB_USERS[key], row
        assert row["reconnects"] >= row["disconnects"] > 0, row
        # SIGKILL of a process sharing a port resets the handshakes still in its own accept
        # queue (the kernel does not hand them to the other listeners): a killed protocol's
        # clients may see a few failed connects, each retried. The storm alone costs none.
        allowed = PROCESS_LAB_USERS[key] // 100 if protocol == "sse" else 0
        assert row["connect_failures"] <= allowed, row
        for counter in ("gaps", "missing", "duplicates", "out_of_order", "resets"):
            assert row[counter] == 0, (counter, row)
    # The kill cut the killed process's SSE clients a second time; the WebSocket ones only
    # the storm.
    assert streams["sse"]["disconnects"] > streams["sse"]["connected_peak"], streams["sse"]

    results = load_results(run_dir)
    kinds = [note["kind"] for note in results.annotations]
    assert "storm" in kinds and "kill" in kinds, kinds
    assert "replica_stop" in kinds and "replica_start" in kinds, kinds
    # The target monitor polled the processes: they accepted every client again.
    (drop,) = [note for note in results.annotations if note["kind"] == "storm"]
    after = sum(
        point.fields["accepted"]
        for point in results.series("target_accepts")
        if point.time_ns >= int(drop["at"] * 1e9)
    )
    cut = streams["ws"]["disconnects"] + streams["sse"]["disconnects"]
    assert after >= cut, (after, cut)
