"""``wirelab run --scenario rolling-deploy``: a real rolling restart under a small load.

Two replicas per protocol (own redis-server, HAProxy for REST/SSE/WS, client-balanced gRPC),
a few clients of every kind, every replica replaced one at a time in the middle of the run.
Nothing may be lost, delivered twice or fail: the summary says so, and the report shows it.
The run (tests/fixtures/runs.py) also streams to the session's influxd, whose points the
dashboard tests query.
"""

from __future__ import annotations

import json

from tests.fixtures.runs import Run
from wirelab.metrics.results import load_results


def test_rolling_restart_under_load_loses_nothing_and_fails_no_call(
    rolling_deploy_run: Run,
) -> None:
    run = rolling_deploy_run
    assert run.exit_code == 0, run.log_tail()
    run_dir = run.run_dir
    summary = json.loads((run_dir / "summary.json").read_text())

    streams = {row["protocol"]: row for row in summary["streams"]}
    for protocol in ("sse", "ws", "grpc"):
        row = streams[protocol]
        assert row["delivered"] > 100, protocol
        assert row["gaps"] == row["missing"] == row["duplicates"] == 0, (protocol, row)
        assert row["resets"] == row["out_of_order"] == 0, (protocol, row)
        # Every client was on a replica that drained: it was told to go, and it came back.
        assert row["goaways"] > 0 and row["reconnects"] > 0, (protocol, row)
    requests = {row["name"]: row for row in summary["requests"]}
    rest = [row for row in summary["requests"] if row["protocol"] == "rest"]
    assert sum(row["count"] for row in rest) > 20
    assert sum(row["failures"] for row in rest) == 0, rest
    assert requests["grpc Echo"]["count"] > 10
    assert requests["grpc Echo"]["failures"] == 0, requests["grpc Echo"]

    deploy = summary["deploy"]
    (action,) = deploy["actions"]
    assert action["action"] == "rolling_restart" and action["ok"], action
    assert set(action["protocols"]) == {"sse", "ws", "grpc"}
    assert all(figures["back_99_s"] is not None for figures in action["protocols"].values())
    assert deploy["protocols"]["rest"]["failed_requests_in_window"] == 0

    # The timeline: each replica started, drained and stopped, in that order, with names
    # that the server-side series share.
    results = load_results(run_dir)
    names = {f"{p}-{i}" for p in ("rest", "sse", "ws", "grpc") for i in (1, 2)}
    for name in names:
        kinds = [
            note["kind"] for note in results.annotations if note["tags"].get("replica") == name
        ]
        assert kinds == ["replica_start", "replica_drain", "replica_stop"], (name, kinds)
    assert {p.tags["replica"] for p in results.series("targets")} == names
    # Whether a 1 s sample catches a replica mid-drain depends on timing (a WS drain can take
    # well under a second), so the drain itself is pinned by the annotations above.
    kinds = [note["kind"] for note in results.annotations]
    assert kinds.index("deploy_start") < kinds.index("deploy_end")
    report = (run_dir / "report.html").read_text()
    assert "Deploy &amp; storms" in report and "Accept rate per protocol" in report
