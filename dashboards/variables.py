"""The dashboard variables: pick a run, then narrow to protocols, series, workers, replicas.

Values come from ``SHOW TAG VALUES`` of the measurements that carry the tag, filtered by
the variables before them (scenario → run → protocol → name), so each list only offers what
the selected run has.
"""

# ruff: noqa: S608 - InfluxQL for Grafana built from constants: no input reaches it

from __future__ import annotations

from .grafana import Annotation, Variable
from .influxql import RUN

SCENARIO = Variable(
    "scenario",
    "scenario",
    'SHOW TAG VALUES FROM "users" WITH KEY = "scenario"',
    "Scenario of the runs offered in the run list.",
    multi=False,
)
RUN_ID = Variable(
    "run_id",
    "run",
    'SHOW TAG VALUES FROM "users" WITH KEY = "run_id" WHERE "scenario" =~ /^$scenario$/',
    "The run to show. Run ids end in their start time, so the newest run is listed first.",
    multi=False,
    include_all=False,
    sort=2,
)
PROTOCOL = Variable(
    "protocol",
    "protocol",
    f'SHOW TAG VALUES FROM /^(requests|streams)$/ WITH KEY = "protocol" WHERE {RUN}',
    "Protocols of the run: rest, poll (short and long polling), sse, ws, grpc.",
)
NAME = Variable(
    "name",
    "name",
    'SHOW TAG VALUES FROM /^(requests|streams)$/ WITH KEY = "name" '
    f'WHERE {RUN} AND "protocol" =~ /^$protocol$/',
    "Request and stream series of the selected protocols, e.g. 'ws echo', 'sse deliver'.",
)
WORKER = Variable(
    "worker",
    "worker",
    f'SHOW TAG VALUES FROM "worker_health" WITH KEY = "worker" WHERE {RUN}',
    "Locust worker processes of the run (the load generators).",
)
REPLICA = Variable(
    "replica",
    "replica",
    f'SHOW TAG VALUES FROM "targets" WITH KEY = "replica" WHERE {RUN} '
    'AND "protocol" =~ /^$protocol$/',
    "Target replicas of the run (slot names such as ws-1; a restarted replica keeps its slot).",
)

#: The run selection every dashboard starts with.
COMMON = [SCENARIO, RUN_ID, PROTOCOL, NAME]

#: Scenario actions (deploy start/end, replica drain, storm, kill, lost workers) on every
#: time series of every dashboard.
ACTIONS = Annotation(
    "Scenario actions",
    f'SELECT "text", "kind" FROM "annotations" WHERE {RUN} AND $timeFilter',
    "#D55E00",
)
