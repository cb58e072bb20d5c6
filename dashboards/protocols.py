"""Protocol comparison: the same figures side by side for each way of getting the feed.

Every stream reads the same feed, so short polling, long polling, SSE, WebSocket and gRPC
can be compared on the same work: one row or bar per stream (``poll short``, ``poll long``,
``sse deliver``, ``ws deliver``, ``grpc deliver``) and per request series.
"""

from __future__ import annotations

from . import influxql as q
from .grafana import Dashboard, Query, Step, bargauge, table, timeseries
from .variables import ACTIONS, COMMON


def _per_stream_bar(title: str, description: str, fields: str, unit: str = "short") -> object:
    return bargauge(
        title,
        description,
        Query(q.select(fields, "streams", by=["name"], over_time=False), alias="$tag_name"),
        unit=unit,
        calc="max",
        height=7,
    )


def dashboard() -> Dashboard:
    return Dashboard(
        uid="wirelab-protocols",
        title="wirelab · Protocol comparison",
        description="Short polling, long polling, SSE, WebSocket and gRPC on the same feed: "
        "delivery, lag, loss, connections and request latency side by side.",
        variables=COMMON,
        annotations=[ACTIONS],
        panels=[
            table(
                "Streams side by side",
                "One row per stream over the time range: events delivered, worst-interval "
                "lag p50 and p99 (ms), lost, duplicated and out-of-order events, reconnects "
                "and the most clients connected at once.",
                Query(
                    q.select(
                        'sum("delivered") AS "delivered", max("lag_p50") AS "lag p50 ms", '
                        'max("lag_p99") AS "lag p99 ms", sum("missing") AS "lost", '
                        'sum("duplicates") AS "duplicates", '
                        'sum("out_of_order") AS "out of order", '
                        'sum("reconnects") AS "reconnects", max("connected") AS "peak connected"',
                        "streams",
                        by=["protocol", "name"],
                        over_time=False,
                    ),
                    table=True,
                ),
                width=24,
                height=7,
            ),
            table(
                "Requests side by side",
                "One row per request series: requests, failures and worst-interval latency "
                "p50, p99 and max (ms).",
                Query(
                    q.select(
                        'sum("count") AS "requests", sum("failures") AS "failures", '
                        'max("p50") AS "p50 ms", max("p99") AS "p99 ms", max("max") AS "max ms"',
                        "requests",
                        by=["protocol", "name"],
                        over_time=False,
                    ),
                    table=True,
                ),
                width=24,
                height=9,
            ),
            _per_stream_bar(
                "Delivery lag p50 per stream (worst interval)",
                "Median delivery lag (ms) per stream, worst interval in the range.",
                'max("lag_p50")',
                "ms",
            ),
            _per_stream_bar(
                "Delivery lag p99 per stream (worst interval)",
                "99th-percentile delivery lag (ms) per stream, worst interval in the range. "
                "Polling pays its interval here; push protocols should not.",
                'max("lag_p99")',
                "ms",
            ),
            _per_stream_bar(
                "Lost, duplicated and out-of-order events per stream",
                "Events lost + delivered twice + out of order, per stream over the range. "
                "Every bar should be 0.",
                'sum("missing") + sum("duplicates") + sum("out_of_order")',
            ),
            _per_stream_bar(
                "Reconnects per stream",
                "Reconnects per stream over the range (after drains, storms or errors).",
                'sum("reconnects")',
            ),
            timeseries(
                "Delivered events per stream",
                "Feed events delivered per second by each stream: the same feed through each "
                "protocol.",
                Query(
                    q.select(q.per_second("delivered"), "streams", by=["name"]), alias="$tag_name"
                ),
                unit="suffix: events/s",
            ),
            timeseries(
                "Open connections per stream",
                "Clients connected per stream across all workers (polling streams count "
                "their polling clients).",
                Query(q.select('mean("connected")', "streams", by=["name"]), alias="$tag_name"),
            ),
            bargauge(
                "Request latency p99 per request (worst interval)",
                "99th-percentile latency (ms) per request series, worst interval in the range: "
                "REST calls, polls, WebSocket echo and ping, gRPC Echo and Chat, connects.",
                Query(
                    q.select('max("p99")', "requests", by=["name"], over_time=False),
                    alias="$tag_name",
                ),
                unit="ms",
                calc="max",
                steps=[Step(None, "green")],
                width=24,
                height=10,
            ),
        ],
    )
