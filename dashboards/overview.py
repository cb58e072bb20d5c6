"""Run overview: did the run pass, how much load, how fast, and what happened when."""

# ruff: noqa: S608 - InfluxQL for Grafana built from constants: no input reaches it

from __future__ import annotations

from . import influxql as q
from .grafana import Dashboard, Needs, Query, Step, stat, table, timeseries
from .variables import ACTIONS, COMMON

GREEN, ORANGE, RED = "green", "orange", "red"

PASS_FAIL = [
    {
        "type": "value",
        "options": {
            "0": {"text": "FAIL", "color": RED, "index": 0},
            "1": {"text": "pass", "color": GREEN, "index": 1},
        },
    }
]


def dashboard() -> Dashboard:
    return Dashboard(
        uid="wirelab-overview",
        title="wirelab · Run overview",
        description="One wirelab run: verdicts, load, throughput, failures and latency, "
        "with the scenario's actions marked.",
        variables=COMMON,
        annotations=[ACTIONS],
        panels=[
            stat(
                "Peak users",
                "Most Locust users running at once across all workers.",
                Query(q.select('max("users")', "users", [q.RUN], over_time=False)),
                calc="max",
            ),
            stat(
                "Requests",
                "Requests (and request-like calls: connects, RPCs, polls) in the time range.",
                Query(q.select('sum("count")', "requests", over_time=False)),
            ),
            stat(
                "Error rate",
                "Failed requests as a share of all requests in the time range.",
                Query(
                    q.select('sum("failures") / sum("count") * 100', "requests", over_time=False)
                ),
                unit="percent",
                decimals=2,
                steps=[Step(None, GREEN), Step(0.1, ORANGE), Step(1, RED)],
            ),
            stat(
                "Events delivered",
                "Feed events that reached the application on every stream (SSE, WebSocket, "
                "gRPC, short and long polling).",
                Query(q.select('sum("delivered")', "streams", over_time=False)),
            ),
            stat(
                "Events lost",
                "Events a client never received (a gap its resume could not fill). Anything "
                "above 0 is data loss.",
                Query(q.select('sum("missing")', "streams", over_time=False)),
                steps=[Step(None, GREEN), Step(1, RED)],
            ),
            stat(
                "Failed thresholds",
                "Threshold verdicts of the run that failed (from the thresholds measurement "
                "written at the end of the run). 0 means the run passed its gates.",
                Query(
                    q.select(
                        'count("passed") - sum("passed")', "thresholds", [q.RUN], over_time=False
                    )
                ),
                steps=[Step(None, GREEN), Step(1, RED)],
                needs=Needs.THRESHOLDS,
            ),
            timeseries(
                "Users",
                "Running Locust users across all workers, per interval.",
                Query(q.select('mean("users") AS "users"', "users", [q.RUN]), alias="users"),
            ),
            timeseries(
                "Throughput per protocol",
                "Requests per second per protocol (each interval's count over its length).",
                Query(
                    q.select(q.per_second("count"), "requests", by=["protocol"]),
                    alias="$tag_protocol",
                ),
                unit="reqps",
            ),
            timeseries(
                "Failures per protocol",
                "Failed requests per second per protocol: errors, timeouts and rejected "
                "connects. A flat zero is what a healthy run shows.",
                Query(
                    q.select(q.per_second("failures"), "requests", by=["protocol"]),
                    alias="$tag_protocol",
                ),
                unit="reqps",
            ),
            timeseries(
                "Latency p50 per protocol",
                "Median request latency per protocol (ms; from the intended start in "
                "open-model runs). A bucket shows its worst interval's p50, never an average "
                "of percentiles.",
                Query(
                    q.select(q.worst("p50"), "requests", by=["protocol"]), alias="$tag_protocol p50"
                ),
                unit="ms",
            ),
            timeseries(
                "Latency p99 per protocol",
                "99th-percentile request latency per protocol (ms); each bucket shows its "
                "worst interval's p99 across the protocol's requests.",
                Query(
                    q.select(q.worst("p99"), "requests", by=["protocol"]), alias="$tag_protocol p99"
                ),
                unit="ms",
            ),
            timeseries(
                "Latency percentiles of the selected requests",
                "p50, p90, p95, p99 and p99.9 latency (ms) of the requests selected above, "
                "worst interval per bucket. Whole-run percentiles from the merged histograms "
                "are in the run's report.",
                Query(
                    q.select(
                        q.worst(
                            "p50",
                            "p90",
                            "p95",
                            "p99",
                            "p999",
                            labels=["p50", "p90", "p95", "p99", "p99.9"],
                        ),
                        "requests",
                    ),
                    alias="$col",
                ),
                unit="ms",
            ),
            timeseries(
                "Latency p99 per request",
                "99th-percentile latency (ms) of each request series, e.g. 'ws echo', "
                "'grpc Echo', 'rest GET /items/{id}'.",
                Query(q.select(q.worst("p99"), "requests", by=["name"]), alias="$tag_name p99"),
                unit="ms",
            ),
            table(
                "Threshold verdicts",
                "Every threshold of the run and its verdict per subject, as the CI gate saw "
                "it: observed value, limit and pass/FAIL.",
                Query(
                    'SELECT "threshold", "name", "passed", "observed", "limit", "detail" '
                    f'FROM "thresholds" {q.where(q.RUN)}',
                    table=True,
                ),
                mappings=PASS_FAIL,
                overrides=[
                    {
                        "matcher": {"id": "byName", "options": "passed"},
                        "properties": [
                            {"id": "custom.cellOptions", "value": {"type": "color-background"}}
                        ],
                    }
                ],
                transformations=[
                    {
                        "id": "organize",
                        "options": {
                            "excludeByName": {"Time": True},
                            "renameByName": {"name": "subject", "passed": "verdict"},
                        },
                    }
                ],
                needs=Needs.THRESHOLDS,
            ),
            table(
                "Scenario actions",
                "The run's timeline: deploys, replica starts/drains/stops, kills, storms, "
                "scaling and lost workers, as the scenario recorded them.",
                Query(
                    f'SELECT "kind", "text" FROM "annotations" {q.where(q.RUN)}',
                    table=True,
                ),
                transformations=[],
                needs=Needs.DEPLOY,
            ),
        ],
    )
