"""Deploy & storms: connections moving between replicas, the reconnect storm, and its cost.

The server side comes from the ``targets`` measurement (one point per target replica per
interval); the client side from ``streams`` and ``requests``; the actions from
``annotations``. Panels marked ``Needs.DEPLOY`` only fill on runs that act on the targets
(``rolling-deploy``, ``reconnect-storm``).
"""

# ruff: noqa: S608 - InfluxQL for Grafana built from constants: no input reaches it

from __future__ import annotations

from . import influxql as q
from .grafana import Dashboard, Needs, Query, Step, bargauge, stat, table, timeseries
from .variables import ACTIONS, COMMON, REPLICA

CONN_PER_S = "suffix: conn/s"
REPLICAS = (q.RUN, q.PROTOCOL, q.REPLICA)
CLEAN = [Step(None, "green"), Step(1, "red")]


def dashboard() -> Dashboard:
    return Dashboard(
        uid="wirelab-deploy",
        title="wirelab · Deploy & storms",
        description="Rolling deploys and reconnect storms on one timeline: connections per "
        "replica, accept rate, reconnect times, errors and lost events, with each action "
        "marked.",
        variables=[*COMMON, REPLICA],
        annotations=[ACTIONS],
        panels=[
            stat(
                "Time to recover (reconnect p99)",
                "Per protocol, the worst interval's p99 reconnect time: from a client's "
                "disconnect to its first event after resuming. 99% of the clients that "
                "dropped in that interval had data again within this time.",
                Query(
                    q.select('max("reconnect_p99")', "streams", by=["protocol"], over_time=False),
                    alias="$tag_protocol",
                ),
                unit="ms",
                calc="max",
                width=6,
                needs=Needs.DEPLOY,
            ),
            stat(
                "Peak accept rate",
                "Per protocol, the most new connections per second the target replicas "
                "accepted: the height of the reconnect storm (jitter flattens it).",
                Query(
                    q.select(q.per_second("accepted"), "targets", REPLICAS, by=["protocol"]),
                    alias="$tag_protocol",
                ),
                unit=CONN_PER_S,
                calc="max",
                width=6,
                needs=Needs.DEPLOY,
            ),
            stat(
                "Failed requests",
                "Failed requests and RPCs in the time range (zoom to the deploy): a graceful "
                "drain should keep this at 0.",
                Query(q.select('sum("failures")', "requests", over_time=False)),
                steps=CLEAN,
                width=6,
            ),
            stat(
                "Events lost or duplicated",
                "Stream events lost plus events delivered twice in the time range: resume "
                "after a drain should keep this at 0.",
                Query(q.select('sum("missing") + sum("duplicates")', "streams", over_time=False)),
                steps=CLEAN,
                width=6,
            ),
            timeseries(
                "Connections per target replica",
                "Open client connections on each target replica (server side). During a "
                "rolling deploy connections leave the draining replica and land on the others.",
                Query(
                    q.select('mean("active_connections")', "targets", REPLICAS, by=["replica"]),
                    alias="$tag_replica",
                ),
                needs=Needs.DEPLOY,
            ),
            timeseries(
                "Accept rate per target replica",
                "New connections accepted per second by each replica: the reconnect storm "
                "as the servers see it.",
                Query(
                    q.select(q.per_second("accepted"), "targets", REPLICAS, by=["replica"]),
                    alias="$tag_replica",
                ),
                unit=CONN_PER_S,
                needs=Needs.DEPLOY,
            ),
            timeseries(
                "Replica readiness and draining",
                "Per replica: ready (1 = passing /readyz) and draining (1 = saying goodbye "
                "to its clients). Readiness must turn 0 before draining starts.",
                Query(
                    q.select(
                        'max("ready") AS "ready", max("draining") AS "draining"',
                        "targets",
                        REPLICAS,
                        by=["replica"],
                    ),
                    alias="$tag_replica $col",
                ),
                stepped=True,
                needs=Needs.DEPLOY,
            ),
            timeseries(
                "Server requests per target replica",
                "Requests per second each replica served (REST, polling and gRPC unary): "
                "how load moved between replicas.",
                Query(
                    q.select(q.per_second("requests"), "targets", REPLICAS, by=["replica"]),
                    alias="$tag_replica",
                ),
                unit="reqps",
                needs=Needs.DEPLOY,
            ),
            timeseries(
                "Connected clients per protocol",
                "Open streams per protocol as the clients count them. The dip's width after "
                "a drain is the time clients were away.",
                Query(
                    q.sum_of_gauge("connected", "streams", q.SERIES, per=["name"], by=["protocol"]),
                    alias="$tag_protocol",
                ),
            ),
            timeseries(
                "Client reconnects per protocol",
                "Reconnects per second per protocol, as the clients made them.",
                Query(
                    q.select(q.per_second("reconnects"), "streams", by=["protocol"]),
                    alias="$tag_protocol",
                ),
                unit="suffix: /s",
            ),
            timeseries(
                "Reconnect time p50 and p99 per protocol",
                "Time from disconnect to the first event after resuming (ms), per protocol; "
                "worst interval per bucket. Only intervals with reconnects have a value.",
                Query(
                    q.select(
                        q.worst("reconnect_p50", "reconnect_p99", labels=["p50", "p99"]),
                        "streams",
                        by=["protocol"],
                    ),
                    alias="$tag_protocol $col",
                ),
                unit="ms",
                needs=Needs.DEPLOY,
            ),
            bargauge(
                "Reconnect-time distribution per protocol",
                "Reconnect time p50 and p99 per protocol over the time range (worst interval). "
                "p99 far above p50 means a few clients waited much longer than most.",
                Query(
                    q.select(
                        q.worst("reconnect_p50", "reconnect_p99", labels=["p50", "p99"]),
                        "streams",
                        by=["protocol"],
                        over_time=False,
                    ),
                    alias="$tag_protocol $col",
                ),
                unit="ms",
                calc="max",
                needs=Needs.DEPLOY,
            ),
            timeseries(
                "Errors during the deploy",
                "Per bucket and protocol: failed requests, failed stream connects, lost "
                "events and duplicates. Read against the marked actions.",
                Query(
                    q.select('sum("failures") AS "failed requests"', "requests", by=["protocol"]),
                    alias="$tag_protocol $col",
                ),
                Query(
                    q.select(
                        q.sums(
                            "connect_failures",
                            "missing",
                            "duplicates",
                            labels=["failed connects", "lost events", "duplicates"],
                        ),
                        "streams",
                        by=["protocol"],
                    ),
                    alias="$tag_protocol $col",
                ),
            ),
            timeseries(
                "Resumes and replayed events per protocol",
                "Server side, per bucket: resume requests (since seq N) and events replayed "
                "from the feed log to resuming clients.",
                Query(
                    q.select(
                        q.sums("resumes", "replayed"),
                        "targets",
                        REPLICAS,
                        by=["protocol"],
                    ),
                    alias="$tag_protocol $col",
                ),
                needs=Needs.DEPLOY,
            ),
            table(
                "Scenario actions",
                "The run's timeline: deploy start/end, replica start, drain and stop, kills, "
                "storms, scaling and lost workers.",
                Query(f'SELECT "kind", "text" FROM "annotations" {q.where(q.RUN)}', table=True),
                transformations=[],
                width=24,
                needs=Needs.DEPLOY,
            ),
        ],
    )
