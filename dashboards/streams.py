"""Streams: was every event delivered, once, in order, and how late."""

from __future__ import annotations

from . import influxql as q
from .grafana import Dashboard, Query, Step, stat, timeseries
from .variables import ACTIONS, COMMON

EVENTS_PER_S = "suffix: events/s"
PER_S = "suffix: /s"
CLEAN = [Step(None, "green"), Step(1, "red")]


def _total(title: str, field: str, description: str, *, bad: bool = True) -> object:
    return stat(
        title,
        description,
        Query(q.select(f'sum("{field}")', "streams", over_time=False)),
        steps=CLEAN if bad else [],
    )


def dashboard() -> Dashboard:
    return Dashboard(
        uid="wirelab-streams",
        title="wirelab · Streams",
        description="Push and poll streams (SSE, WebSocket, gRPC, short and long polling): "
        "delivery, lag, loss, duplication, ordering, connections and reconnects.",
        variables=COMMON,
        annotations=[ACTIONS],
        panels=[
            _total(
                "Events delivered",
                "delivered",
                "Feed events that reached the application across the selected streams.",
                bad=False,
            ),
            _total(
                "Events lost",
                "missing",
                "Events never received: sequence numbers skipped that no resume filled in.",
            ),
            _total(
                "Gaps",
                "gaps",
                "Times a stream skipped ahead in the sequence (each gap may lose several "
                "events; see Events lost).",
            ),
            _total(
                "Duplicates",
                "duplicates",
                "Events delivered to the application more than once (e.g. a resume that "
                "replayed too much).",
            ),
            _total(
                "Out of order",
                "out_of_order",
                "Events that arrived after a later event of the same feed.",
            ),
            _total(
                "Lost to resets",
                "reset_lost",
                "Events lost because a resume point had fallen out of the feed's retention "
                "and the server said so with a reset (never a silent gap).",
            ),
            timeseries(
                "Events delivered per protocol",
                "Feed events delivered per second per protocol. With the same feed rate, each "
                "protocol should deliver rate × connected clients.",
                Query(
                    q.select(q.per_second("delivered"), "streams", by=["protocol"]),
                    alias="$tag_protocol",
                ),
                unit=EVENTS_PER_S,
            ),
            timeseries(
                "Connected clients per protocol",
                "Open streams per protocol across all live workers (the sum of each "
                "stream's connected gauge). A dip is clients disconnected and not yet back.",
                Query(
                    q.sum_of_gauge("connected", "streams", q.SERIES, per=["name"], by=["protocol"]),
                    alias="$tag_protocol",
                ),
            ),
            timeseries(
                "Delivery lag p50 per stream",
                "Median delivery lag (receive time minus publish time, ms) per stream; each "
                "bucket shows its worst interval's p50.",
                Query(q.select(q.worst("lag_p50"), "streams", by=["name"]), alias="$tag_name p50"),
                unit="ms",
            ),
            timeseries(
                "Delivery lag p99 per stream",
                "99th-percentile delivery lag (ms) per stream, worst interval per bucket. "
                "Polling's lag includes the poll interval; push protocols' should not.",
                Query(q.select(q.worst("lag_p99"), "streams", by=["name"]), alias="$tag_name p99"),
                unit="ms",
            ),
            timeseries(
                "Delivery lag percentiles of the selected streams",
                "p50, p90, p99 and max delivery lag (ms) over the streams selected above, "
                "worst interval per bucket.",
                Query(
                    q.select(
                        q.worst(
                            "lag_p50",
                            "lag_p90",
                            "lag_p99",
                            "lag_max",
                            labels=["p50", "p90", "p99", "max"],
                        ),
                        "streams",
                    ),
                    alias="$col",
                ),
                unit="ms",
            ),
            timeseries(
                "Gaps, losses, duplicates and out-of-order events",
                "Per bucket, over the selected streams: gaps, events lost, duplicates, "
                "out-of-order events, resets and events lost to resets. All zero is a clean "
                "run.",
                Query(
                    q.select(
                        q.sums(
                            "gaps",
                            "missing",
                            "duplicates",
                            "out_of_order",
                            "resets",
                            "reset_lost",
                            labels=[
                                "gaps",
                                "lost",
                                "duplicates",
                                "out of order",
                                "resets",
                                "lost to resets",
                            ],
                        ),
                        "streams",
                    ),
                    alias="$col",
                ),
                width=24,
            ),
            timeseries(
                "Reconnects per protocol",
                "Stream reconnects per second per protocol (a resume after a disconnect). "
                "A spike with no action marked means the target or network dropped clients.",
                Query(
                    q.select(q.per_second("reconnects"), "streams", by=["protocol"]),
                    alias="$tag_protocol",
                ),
                unit=PER_S,
            ),
            timeseries(
                "Connection churn per protocol",
                "Per bucket and protocol: connects, disconnects, failed connects and server "
                "goodbyes (HTTP/2 GOAWAY, WebSocket 1001, SSE end of stream).",
                Query(
                    q.select(
                        q.sums(
                            "connects",
                            "disconnects",
                            "connect_failures",
                            "goaways",
                            labels=["connects", "disconnects", "failed connects", "goaways"],
                        ),
                        "streams",
                        by=["protocol"],
                    ),
                    alias="$tag_protocol $col",
                ),
            ),
        ],
    )
