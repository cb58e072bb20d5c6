"""Reconnect storms: every WS and SSE connection reset at once, 150 clients per run.

The same storm twice, only the clients' reconnect policy differs. Judged on the shape of the
replicas' accept rate (100 ms buckets, peak over mean in the storm's window), never on seconds:
immediate reconnects make one spike, full jitter a plateau. The jittered run also keeps a
feed retention short enough that the late clients' resume points are gone: they must be
told (a reset, counted as lost), never resumed as if nothing happened.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from wirelab.metrics.results import load_results

SCENARIO = {
    "name": "storm-test",
    "duration": "13s",
    "workers": 1,
    "spawn_rate": 150,
    "replicas": 2,
    "users": {"ws_feed": 75, "sse": 75},
    "feed": {"rate": 50},
    "actions": [{"at": "6s", "do": "drop_connections", "service": "all"}],
    "thresholds": ["sse:lost==0", "ws:lost==0", "*:duplicates==0"],
}


def storm(tmp_path: Path, name: str, reconnect: str, retention: int) -> tuple[int, Path, str]:
    scenario = {**SCENARIO, "reconnect": reconnect}
    scenario["feed"] = {**SCENARIO["feed"], "retention": retention}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(scenario))
    reports = tmp_path / name
    result = subprocess.run(
        [sys.executable, "-m", "wirelab", "run", "--scenario", str(path),
         "--report-dir", str(reports), "--no-progress"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    return result.returncode, run_dir, result.stdout[-3000:] + result.stderr[-3000:]


def storm_shape(run_dir: Path) -> tuple[float, int]:
    """Peak over mean of all replicas' accepts per 100 ms in the 6 s after the drop, and
    the number accepted in that window."""
    results = load_results(run_dir)
    (drop,) = [note for note in results.annotations if note["kind"] == "storm"]
    start = int(drop["at"] * 10)
    buckets: dict[int, int] = defaultdict(int)
    for point in results.series("target_accepts"):
        buckets[point.time_ns // 100_000_000] += point.fields["accepted"]
    window = [buckets.get(index, 0) for index in range(start, start + 60)]
    return max(window) / (sum(window) / len(window)), sum(window)


def test_a_full_jitter_storm_is_flatter_than_an_immediate_one_and_resets_are_not_success(
    tmp_path: Path,
) -> None:
    code, immediate_dir, log = storm(tmp_path, "immediate", "immediate", retention=10_000)
    # Every threshold held (0); one worker fanning 7,500 events/s out in bursts of 150 can
    # also be generator-bound on a crowded 2-core host (4): that verdict is not judged here.
    assert code in (0, 4), log
    code, jitter_dir, log = storm(tmp_path, "jitter", "full_jitter:base=3,cap=3", retention=20)

    immediate_shape, immediate_back = storm_shape(immediate_dir)
    jitter_shape, jitter_back = storm_shape(jitter_dir)
    # Every client came back in the window, both times (150, plus a few failed attempts).
    assert immediate_back >= 148 and jitter_back >= 148, (immediate_back, jitter_back)
    # A spike against a plateau: the same number of accepts, a far lower peak.
    assert immediate_shape > 3 * jitter_shape, (immediate_shape, jitter_shape)
    immediate = json.loads((immediate_dir / "summary.json").read_text())["deploy"]
    jitter = json.loads((jitter_dir / "summary.json").read_text())["deploy"]
    for protocol in ("ws", "sse"):
        peak_immediate = immediate["actions"][0]["protocols"][protocol]["peak_accept_rate"]
        peak_jitter = jitter["actions"][0]["protocols"][protocol]["peak_accept_rate"]
        assert peak_immediate > 2 * peak_jitter, (protocol, peak_immediate, peak_jitter)

    # The jittered clients came back after the 20-event retention had moved on: resumed
    # with an explicit reset, counted as lost, and the run fails its lost==0 thresholds.
    assert code == 1, log
    summary = json.loads((jitter_dir / "summary.json").read_text())
    streams = {row["protocol"]: row for row in summary["streams"]}
    assert sum(streams[p]["resets"] for p in ("ws", "sse")) > 0, streams
    for protocol in ("ws", "sse"):
        row = streams[protocol]
        assert row["missing"] == row["gaps"] == row["duplicates"] == 0, row  # never silent
        assert row["reset_lost"] >= row["resets"], row
    failed = {row["expression"] for row in summary["thresholds"] if not row["passed"]}
    assert failed and failed <= {"sse:lost==0", "ws:lost==0"}, failed
    lost = {p: jitter["protocols"][p]["lost"] for p in ("ws", "sse")}
    assert sum(lost.values()) > 0 and all(
        lost[p] == streams[p]["reset_lost"] for p in ("ws", "sse")
    ), lost
