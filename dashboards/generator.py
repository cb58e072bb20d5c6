"""Generator health: is the load generator, not the target, the bottleneck?

A Locust worker is one gevent loop on one core: at 100 % of a core it can no longer send on
time, and every latency it reports grows with its own queueing, which its loop lag (how late
a timer greenlet runs) shows directly. These panels let a reviewer tell a slow target from a
saturated generator, and see whether metrics were lost on the way. The bounds drawn are the
generator verdict's (:mod:`wirelab.metrics.generator`).
"""

from __future__ import annotations

from wirelab.metrics.generator import BOUNDS
from wirelab.metrics.looplag import PERIOD_S

from . import influxql as q
from .grafana import Dashboard, Query, Step, stat, timeseries
from .variables import ACTIONS, COMMON, WORKER

WORKERS = (q.RUN, q.WORKER)
SATURATION = [Step(None, "green"), Step(80, "orange"), Step(100, "red")]
CLEAN = [Step(None, "green"), Step(1, "red")]


def _per_worker(field: str) -> Query:
    return Query(
        q.select(f'mean("{field}")', "worker_health", WORKERS, by=["worker"]), "$tag_worker"
    )


def dashboard() -> Dashboard:
    return Dashboard(
        uid="wirelab-generator",
        title="wirelab · Generator health",
        description="The Locust workers themselves: CPU against the one-core saturation "
        "line, event-loop lag against the generator bound, memory, connections held, dropped "
        "arrival-rate starts and the metrics sinks.",
        variables=[*COMMON, WORKER],
        annotations=[ACTIONS],
        panels=[
            stat(
                "Peak worker CPU",
                "Highest CPU of any worker in one interval, in % of one core. Near 100 % the "
                "worker is saturated and its latencies include its own queueing.",
                Query(q.select('max("cpu_percent")', "worker_health", WORKERS, over_time=False)),
                unit="percent",
                steps=SATURATION,
                calc="max",
                width=6,
            ),
            stat(
                "Peak worker memory",
                "Largest resident memory (RSS) of any worker.",
                Query(q.select('max("rss_bytes")', "worker_health", WORKERS, over_time=False)),
                unit="bytes",
                calc="max",
                width=6,
            ),
            stat(
                "Dropped arrival-rate starts",
                "Open-model request starts the workers could not begin on schedule: the "
                "target saw less load than asked for. Non-zero means add workers.",
                Query(q.select('sum("dropped")', "requests", over_time=False)),
                steps=CLEAN,
                width=6,
            ),
            stat(
                "Metrics points dropped",
                "Points a metrics sink lost (buffer full or rejected) by the end of the range. "
                "Non-zero means the dashboards are missing data.",
                Query(q.select('max("dropped")', "sink", [q.RUN], over_time=False)),
                steps=CLEAN,
                calc="max",
                width=6,
            ),
            timeseries(
                "Worker CPU (% of one core)",
                "CPU of each worker since its previous sample, in % of one core. The red line "
                "at 100 % is saturation: a worker there is the bottleneck, not the target.",
                _per_worker("cpu_percent"),
                unit="percent",
                steps=[Step(None, "green"), Step(100, "red")],
                threshold_lines=True,
            ),
            timeseries(
                "Worker loop lag (p99)",
                "How late each worker's event loop ran a timer due every "
                f"{PERIOD_S * 1000:g} ms, p99 of the interval (stalls counted for all the time "
                "they last). A lag of L adds up to L to every latency, delivery lag and connect "
                "time the worker measures; above "
                f"the red line ({BOUNDS['loop_lag_p99_ms']:g} ms) for a while, the run is "
                "generator-bound.",
                Query(
                    q.select('max("loop_lag_p99")', "worker_health", WORKERS, by=["worker"]),
                    "$tag_worker",
                ),
                unit="ms",
                steps=[Step(None, "green"), Step(BOUNDS["loop_lag_p99_ms"], "red")],
                threshold_lines=True,
            ),
            timeseries(
                "Worker memory (RSS)",
                "Resident memory of each worker. Steady growth over a soak run is a leak in "
                "the generator (or unbounded client buffers).",
                _per_worker("rss_bytes"),
                unit="bytes",
            ),
            timeseries(
                "Connections held per worker",
                "Open streams each worker holds. Uneven numbers mean uneven load per worker.",
                _per_worker("connections"),
            ),
            timeseries(
                "Greenlets per worker",
                "Approximate active gevent loop watchers per worker: grows with connections "
                "and with requests waiting on the loop.",
                _per_worker("greenlets"),
            ),
            timeseries(
                "Dropped arrival-rate starts per protocol",
                "Open-model starts missed per second, per protocol. Any value means the "
                "generator could not keep the asked arrival rate.",
                Query(
                    q.select(q.per_second("dropped"), "requests", by=["protocol"]),
                    alias="$tag_protocol",
                ),
                unit="reqps",
            ),
            timeseries(
                "Metrics sink buffer",
                "Points waiting in each metrics sink's bounded buffer. It rises while a sink "
                "(e.g. InfluxDB) is unreachable and drains when it is back.",
                Query(
                    q.select('max("buffered")', "sink", [q.RUN], by=["name"]),
                    alias="$tag_name",
                ),
            ),
            timeseries(
                "Metrics sink drops and retries",
                "Per sink, so far in the run: points dropped and write retries. Drops mean "
                "missing data in these dashboards (the run's report says how many).",
                Query(
                    q.select(
                        'max("dropped") AS "dropped", max("retries") AS "retries"',
                        "sink",
                        [q.RUN],
                        by=["name"],
                    ),
                    alias="$tag_name $col",
                ),
                width=24,
            ),
        ],
    )
