"""What a deploy or a storm did to the clients: the figures and the timeline.

For runs whose scenario acted on its targets (``rolling_restart``, ``kill``,
``drop_connections``, ``scale``), from the run's recorded data only:

- :func:`deploy_summary` → the ``"deploy"`` entry of ``summary.json``;
- :func:`deploy_html` → an HTML fragment for ``report.html`` (tables, then charts with the
  actions marked);
- :func:`render_comparison` → a whole page with several runs side by side (the benchmark's
  immediate-reconnect storm next to the full-jitter one).

Per action and protocol (the stream protocols: SSE, WebSocket, gRPC):

``affected``            client connections on the replicas the action hit, just before it
                        (the target monitor's last ``active_connections``)
``back_99_s``           seconds from the action until the replicas had accepted 99 % of that
                        many connections again, from their own 100 ms accept buckets
                        (``target_accepts``): the time until 99 % of the clients are back
``peak_accept_rate``    the highest accept rate of a 100 ms bucket within the action's window
                        (connections/s)
``accept_peak_to_mean`` that peak over the mean rate of the window: the storm's shape (about
                        1 for a flat spread, tens for everyone at once)

The window of an action is ``WINDOW_S`` seconds from its start (shorter if the next action or
the run's end comes first). Per protocol over the run: the reconnect-time distribution
(client side, disconnect to first event after resuming), failed handshakes, events lost,
duplicated, reset, and failed requests, in total and within the deploy window (first action's
start to last action's end plus ``SETTLE_S``).
"""

from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any

from ..metrics.histogram import LogHistogram
from ..metrics.results import RunResults
from .svg import line_chart

__all__ = [
    "ACTION_KINDS",
    "SETTLE_S",
    "WINDOW_S",
    "deploy_html",
    "deploy_summary",
    "render_comparison",
]

#: Annotation kinds that mark the start of an action (see wirelab.scenarios.driver).
ACTION_KINDS = {
    "deploy_start": "rolling_restart",
    "kill": "kill",
    "storm": "drop_connections",
    "scale": "scale",
}
STREAM_PROTOCOLS = ("sse", "ws", "grpc")
#: Seconds after an action in which its accept rate is judged.
WINDOW_S = 10.0
#: Seconds after the last action's end that still count as "during the deploy".
SETTLE_S = 5.0
BUCKET_S = 0.1


def _run_start(results: RunResults) -> float:
    if results.started_at:
        return float(results.started_at)
    times = [p.time_ns for p in results.points if p.time_ns]
    return min(times) / 1e9 if times else 0.0


def _actions(results: RunResults) -> list[dict[str, Any]]:
    """Every action, from its annotations: kind, start, end (deploy_end), outcome."""
    start = _run_start(results)
    notes = sorted(results.annotations, key=lambda note: note.get("at", 0))
    actions: list[dict[str, Any]] = []
    for note in notes:
        kind = note.get("kind", "")
        at = float(note.get("at", 0))
        tags = note.get("tags") or {}
        if kind in ACTION_KINDS:
            actions.append(
                {
                    "action": ACTION_KINDS[kind],
                    "kind": kind,
                    "service": tags.get("protocol", "all"),
                    "at_s": round(at - start, 3),
                    "started": at,
                    "ended": at,
                    "ok": True,
                    "text": note.get("text", ""),
                }
            )
        elif kind in ("deploy_end", "action_error"):
            service = tags.get("protocol", "all")
            for action in reversed(actions):
                if action["service"] == service and action["ended"] == action["started"]:
                    action["ended"] = at
                    if kind == "action_error":
                        action["ok"] = False
                        action["error"] = note.get("text", "")
                    break
    for action in actions:
        action["duration_s"] = round(action["ended"] - action["started"], 3)
    return actions


def _accept_buckets(results: RunResults) -> dict[str, dict[int, int]]:
    """Per protocol: accepts per 100 ms bucket (index = epoch ms // 100), all replicas."""
    buckets: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for point in results.points:
        if point.measurement != "target_accepts" or not point.time_ns:
            continue
        protocol = point.tags.get("protocol", "")
        buckets[protocol][point.time_ns // 100_000_000] += int(point.fields.get("accepted", 0))
    return buckets


def _targets_by_time(results: RunResults) -> dict[str, list[tuple[float, str, dict[str, Any]]]]:
    """Per protocol: ``(time_s, replica, fields)`` of the ``targets`` points, in time order."""
    rows: dict[str, list[tuple[float, str, dict[str, Any]]]] = defaultdict(list)
    for point in results.series("targets"):
        rows[point.tags.get("protocol", "")].append(
            ((point.time_ns or 0) / 1e9, point.tags.get("replica", ""), point.fields)
        )
    return rows


def _connections_before(
    rows: list[tuple[float, str, dict[str, Any]]], at: float, replicas: set[str] | None = None
) -> int:
    """Active connections (summed over replicas) at the last poll before ``at``."""
    latest: dict[str, int] = {}
    for time_s, replica, fields in rows:
        if time_s > at:
            break
        latest[replica] = int(fields.get("active_connections", 0))
    return sum(n for name, n in latest.items() if replicas is None or name in replicas)


def _affected_replicas(
    results: RunResults, action: dict[str, Any], protocol: str
) -> set[str] | None:
    """The replicas a kill hit (its replica_stop events); ``None``: all of the protocol's."""
    if action["action"] != "kill":
        return None
    names = {
        (note.get("tags") or {}).get("replica", "")
        for note in results.annotations
        if note.get("kind") == "replica_stop"
        and (note.get("tags") or {}).get("protocol") == protocol
        and action["started"] - 0.5 <= float(note.get("at", 0)) <= action["ended"] + 2.0
        and "kill" in str(note.get("text", ""))
    }
    return names or None


def _window_end(actions: list[dict[str, Any]], index: int, run_end: float) -> float:
    start = actions[index]["started"]
    end = start + WINDOW_S
    for later in actions[index + 1 :]:
        if later["started"] > start:
            end = min(end, later["started"])
            break
    return min(end, run_end) if run_end > start else end


def _action_protocol_figures(
    results: RunResults,
    action: dict[str, Any],
    protocol: str,
    buckets: dict[int, int],
    rows: list[tuple[float, str, dict[str, Any]]],
    window_end: float,
) -> dict[str, Any]:
    start = action["started"]
    affected = _connections_before(rows, start, _affected_replicas(results, action, protocol))
    first = int(start * 10)
    last = max(first + 1, int(window_end * 10))
    series = [buckets.get(index, 0) for index in range(first, last)]
    total = sum(series)
    window = (last - first) * BUCKET_S
    peak = max(series, default=0) / BUCKET_S
    mean = total / window if window else 0.0
    back = None
    if affected:
        needed = 0.99 * affected
        running = 0
        index = first
        # Beyond the window too: a slow recovery is still a recovery, just a late one.
        final = max(buckets, default=first)
        while index <= final:
            running += buckets.get(index, 0)
            if running >= needed:
                back = round((index + 1) * BUCKET_S - start, 2)
                break
            index += 1
    return {
        "affected": affected,
        "accepted_in_window": total,
        "window_s": round(window, 1),
        "back_99_s": back,
        "peak_accept_rate": round(peak, 1),
        "mean_accept_rate": round(mean, 2),
        "accept_peak_to_mean": round(peak / mean, 2) if mean else None,
    }


def _client_recovery(results: RunResults, protocol: str, at: float, until: float) -> float | None:
    """Seconds from ``at`` until the clients' ``connected`` gauge (interval resolution) is
    back to 99 % of its value before ``at`` for good (within ``at``..``until``): 0 if it
    never dipped, ``None`` if it was still short at ``until``."""
    totals: dict[int, int] = defaultdict(int)
    for point in results.series("streams", protocol=protocol):
        totals[point.time_ns or 0] += int(point.fields.get("connected", 0))
    timeline = sorted((t / 1e9, n) for t, n in totals.items())
    before = [n for t, n in timeline if t <= at]
    if not before or not before[-1]:
        return None
    wanted = 0.99 * before[-1]
    during = [(t, n) for t, n in timeline if at < t <= until]
    short = [t for t, n in during if n < wanted]
    if not short:
        return 0.0
    back = [t for t, n in timeline if t > short[-1] and n >= wanted]
    return round(back[0] - at, 1) if back else None


def _failures_between(results: RunResults, start: float, end: float) -> dict[str, int]:
    failures: dict[str, int] = defaultdict(int)
    for point in results.points:
        if point.measurement != "requests" or not point.time_ns:
            continue
        # A point covers the interval that ends at its timestamp.
        t = point.time_ns / 1e9
        if start < t <= end + results.interval_s:
            failures[point.tags.get("name", "")] += int(point.fields.get("failures", 0))
    return {name: count for name, count in failures.items() if name}


def deploy_summary(results: RunResults | None) -> dict[str, Any] | None:
    """The ``"deploy"`` entry of summary.json; ``None`` when the run took no action."""
    if results is None:
        return None
    actions = _actions(results)
    if not actions:
        return None
    buckets = _accept_buckets(results)
    rows = _targets_by_time(results)
    run_start = _run_start(results)
    run_end = float(results.ended_at or 0) or max(
        ((p.time_ns or 0) / 1e9 for p in results.points), default=run_start
    )
    stream_protocols = [
        p for p in STREAM_PROTOCOLS if any(s.protocol == p for s in results.streams.values())
    ]
    for index, action in enumerate(actions):
        window_end = _window_end(actions, index, run_end)
        services = stream_protocols if action["service"] == "all" else [action["service"]]
        action["protocols"] = {
            protocol: {
                **_action_protocol_figures(
                    results, action, protocol, buckets.get(protocol, {}), rows.get(protocol, []),
                    window_end,
                ),
                "clients_back_99_s": _client_recovery(
                    results, protocol, action["started"],
                    # Not into the run's last interval: the users stopping is no dip.
                    min(max(window_end, action["ended"] + SETTLE_S),
                        run_end - 1.5 * results.interval_s),
                ),
            }
            for protocol in services
            if protocol in stream_protocols
        }  # fmt: skip
    window_start = min(action["started"] for action in actions)
    window_end = max(action["ended"] for action in actions) + SETTLE_S
    in_window = _failures_between(results, window_start, window_end)
    protocols = _protocol_figures(results, buckets, in_window)
    return {
        "actions": [
            {key: value for key, value in action.items() if key not in ("started", "ended")}
            | {
                "started_at": action["started"],
                "ended_at": action["ended"],
            }
            for action in actions
        ],
        "window": {
            "start_s": round(window_start - run_start, 3),
            "end_s": round(window_end - run_start, 3),
        },
        "protocols": protocols,
        "replicas": _replica_table(results),
    }


_STREAM_COUNTERS = (
    "delivered", "gaps", "missing", "duplicates", "resets", "reset_lost", "reconnects",
    "disconnects", "goaways", "connect_failures",
)  # fmt: skip


def _protocol_figures(
    results: RunResults, buckets: dict[str, dict[int, int]], in_window: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """Per protocol over the run: stream counters, reconnect times, peak accept rate, and
    failed requests in total and within the deploy window."""
    protocols: dict[str, dict[str, Any]] = {}
    reconnect_times: dict[str, list[LogHistogram]] = defaultdict(list)
    for series in sorted(results.streams.values(), key=lambda s: s.protocol):
        entry = protocols.setdefault(
            series.protocol, {"streams": [], **dict.fromkeys(_STREAM_COUNTERS, 0)}
        )
        entry["streams"].append(series.name)
        for key in _STREAM_COUNTERS:
            entry[key] += int(getattr(series, key))
        if series.reconnect_time:
            reconnect_times[series.protocol].append(series.reconnect_time)
    for protocol, entry in protocols.items():
        entry["lost"] = entry["missing"] + entry["reset_lost"]
        entry["reconnect_ms"] = _merged_ms(reconnect_times[protocol])
        accepted = buckets.get(protocol, {})
        entry["peak_accept_rate"] = round(max(accepted.values(), default=0) / BUCKET_S, 1)
    for series in results.requests.values():
        if series.name.endswith(" connect"):
            continue  # a stream's handshake: counted as a failed handshake, above
        entry = protocols.setdefault(series.protocol, {})
        entry["requests"] = entry.get("requests", 0) + series.count
        entry["failed_requests"] = entry.get("failed_requests", 0) + series.failures
        during = in_window.get(series.name, 0)
        entry["failed_requests_in_window"] = entry.get("failed_requests_in_window", 0) + during
        if during:
            entry.setdefault("failed_in_window_by_name", {})[series.name] = during
    return dict(sorted(protocols.items()))


def _merged_ms(histograms: list[Any]) -> dict[str, float | None]:
    if not histograms:
        return {"p50": None, "p99": None, "max": None, "count": 0}
    merged = LogHistogram()
    for histogram in histograms:
        merged.merge(histogram)
    values = merged.quantiles([0.5, 0.99])
    return {
        "p50": round(values[0.5] / 1000, 1) if values[0.5] is not None else None,
        "p99": round(values[0.99] / 1000, 1) if values[0.99] is not None else None,
        "max": round(merged.max / 1000, 1),
        "count": len(merged),
    }


def _replica_table(results: RunResults) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for point in results.series("targets"):
        name = point.tags.get("replica", "")
        row = table.setdefault(
            name,
            {"protocol": point.tags.get("protocol", ""), "peak_connections": 0, "accepted": 0,
             "resumes": 0, "replayed": 0},
        )  # fmt: skip
        fields = point.fields
        row["peak_connections"] = max(
            row["peak_connections"], int(fields.get("active_connections", 0))
        )
        for key in ("accepted", "resumes", "replayed"):
            row[key] += int(fields.get(key, 0))
    return dict(sorted(table.items()))


# -- HTML -------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return escape(str(value))


def _markers(results: RunResults, start: float) -> list[tuple[float, str]]:
    kinds = set(ACTION_KINDS) | {"deploy_end", "action_error"}
    return [
        (float(note.get("at", start)) - start, str(note.get("kind", "")))
        for note in results.annotations
        if note.get("kind") in kinds
    ]


def timeline_charts(results: RunResults, *, width: int = 620) -> list[str]:
    """The charts of the deploy timeline, each with the actions marked."""
    start = _run_start(results)
    markers = _markers(results, start)
    charts = []
    by_replica: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for point in results.series("targets"):
        by_replica[point.tags.get("replica", "")].append(
            ((point.time_ns or 0) / 1e9 - start, float(point.fields.get("active_connections", 0)))
        )
    if by_replica:
        # Many replicas need the room for their legend.
        wide = width * 2 + 12 if len(by_replica) > 6 and width < 1000 else width
        charts.append(
            line_chart(dict(sorted(by_replica.items())), title="Connections per replica",
                       unit="connections", markers=markers, width=wide)
        )  # fmt: skip
    accepts: dict[str, list[tuple[float, float]]] = {}
    end = float(results.ended_at or 0) or start
    for protocol, buckets in sorted(_accept_buckets(results).items()):
        if not buckets or protocol not in STREAM_PROTOCOLS:
            # REST's accepts are its requests (and the balancer's checks): not a storm.
            continue
        # From the run's start to its end, so the time axis matches the other charts; a
        # long run is drawn in wider buckets (at most ~1500 points per line).
        first = min(int(start * 10), *buckets)
        last = max(int(end * 10), *buckets) + 1
        step = max(1, (last - first) // 1500)
        accepts[protocol] = [
            (
                index * BUCKET_S - start,
                sum(buckets.get(i, 0) for i in range(index, index + step)) / (step * BUCKET_S),
            )
            for index in range(first, last, step)
        ]
    if accepts:
        charts.append(
            line_chart(accepts, title="Accept rate per protocol (100 ms buckets)",
                       unit="conn/s", markers=markers, width=width)
        )  # fmt: skip
    reconnects: dict[str, list[tuple[float, float]]] = defaultdict(list)
    errors: dict[str, list[tuple[float, float]]] = defaultdict(list)
    per_time: dict[tuple[str, float], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for point in results.points:
        if point.measurement == "streams":
            t = (point.time_ns or 0) / 1e9 - start
            key = (point.tags.get("protocol", ""), t)
            per_time[key]["reconnects"] += float(point.fields.get("reconnects", 0))
            per_time[key]["connect_failures"] += float(point.fields.get("connect_failures", 0))
            per_time[key]["lost"] += float(point.fields.get("missing", 0))
            per_time[key]["duplicates"] += float(point.fields.get("duplicates", 0))
        elif point.measurement == "requests":
            t = (point.time_ns or 0) / 1e9 - start
            per_time[(point.tags.get("protocol", ""), t)]["failures"] += float(
                point.fields.get("failures", 0)
            )
    for (protocol, t), values in sorted(per_time.items(), key=lambda item: item[0][1]):
        if "reconnects" in values:
            reconnects[protocol].append((t, values["reconnects"]))
        bad = sum(values.get(k, 0) for k in ("failures", "connect_failures", "lost", "duplicates"))
        errors[f"{protocol}"].append((t, bad))
    if reconnects:
        charts.append(
            line_chart(dict(reconnects), title="Client reconnects per protocol",
                       unit="per interval", markers=markers, width=width)
        )  # fmt: skip
    if errors:
        charts.append(
            line_chart(dict(errors), title="Errors: failed requests, failed connects, lost, "
                       "duplicated", unit="per interval", markers=markers, width=width)
        )  # fmt: skip
    return charts


def _tables(summary: dict[str, Any]) -> list[str]:
    out = [
        "<table><tr><th>action</th><th>service</th><th>at</th><th>took</th><th>outcome</th>"
        "<th>protocol</th><th>clients hit</th><th>99% back after</th><th>clients gauge back</th>"
        "<th>peak accept rate</th><th>peak/mean</th></tr>"
    ]
    for action in summary["actions"]:
        outcome = (
            "ok"
            if action["ok"]
            else f"<span class=bad>{escape(action.get('error', 'failed'))}</span>"
        )
        rows = action.get("protocols") or {"–": {}}
        for index, (protocol, figures) in enumerate(rows.items()):
            head = (
                f"<td>{escape(action['action'])}</td><td>{escape(action['service'])}</td>"
                f"<td>{action['at_s']:.1f}s</td><td>{action['duration_s']:.1f}s</td><td>{outcome}</td>"
                if index == 0
                else "<td></td>" * 5
            )
            back = figures.get("back_99_s")
            out.append(
                f"<tr>{head}<td>{escape(protocol)}</td><td>{_fmt(figures.get('affected'))}</td>"
                f"<td>{_fmt(back) + ' s' if back is not None else '–'}</td>"
                f"<td>{_fmt(figures.get('clients_back_99_s'))} s</td>"
                f"<td>{_fmt(figures.get('peak_accept_rate'))}/s</td>"
                f"<td>{_fmt(figures.get('accept_peak_to_mean'))}</td></tr>"
            )
    out.append("</table>")
    out.append(
        "<table><tr><th>protocol</th><th>reconnect p50</th><th>p99</th><th>max</th>"
        "<th>reconnects</th><th>failed handshakes</th><th>lost</th><th>duplicated</th>"
        "<th>resets (events)</th><th>peak accept rate</th><th>failed requests (deploy window)"
        "</th></tr>"
    )
    for protocol, entry in summary["protocols"].items():
        reconnect = entry.get("reconnect_ms") or {}

        def bad(value: Any) -> str:
            cls = "bad" if value else "good"
            return f"<span class={cls}>{_fmt(value)}</span>"

        failed = entry.get("failed_requests")
        in_window = entry.get("failed_requests_in_window")
        out.append(
            f"<tr><td>{escape(protocol)}</td><td>{_fmt(reconnect.get('p50'))} ms</td>"
            f"<td>{_fmt(reconnect.get('p99'))} ms</td><td>{_fmt(reconnect.get('max'))} ms</td>"
            f"<td>{_fmt(entry.get('reconnects'))}</td><td>{_fmt(entry.get('connect_failures'))}</td>"
            f"<td>{bad(entry.get('lost')) if 'lost' in entry else '–'}</td>"
            f"<td>{bad(entry.get('duplicates')) if 'duplicates' in entry else '–'}</td>"
            f"<td>{_fmt(entry.get('resets'))} ({_fmt(entry.get('reset_lost'))})</td>"
            f"<td>{_fmt(entry.get('peak_accept_rate'))}/s</td>"
            f"<td>{bad(failed) if failed is not None else '–'} ({_fmt(in_window)})</td></tr>"
        )
    out.append("</table>")
    return out


def deploy_html(summary: dict[str, Any] | None, results: RunResults | None) -> str:
    """The report's deploy section: actions, per-protocol figures, the timeline charts."""
    if not summary or results is None:
        return ""
    out = [
        "<h2>Deploy &amp; storms</h2>",
        "<p class=meta>99% back: seconds until the replicas had accepted 99% of the "
        "connections the action hit (server side, 100 ms buckets); clients gauge: the same "
        "from the clients' connected gauge (1 interval resolution). Lost events include those "
        "declared by resets (resume past retention).</p>",
        *_tables(summary),
        "<div class=charts>",
        *timeline_charts(results),
        "</div>",
    ]
    return "\n".join(out)


def render_comparison(runs: list[tuple[str, dict[str, Any], RunResults]], *, title: str) -> str:
    """A self-contained page with several runs side by side: each run's figures and
    timeline in its own column (``runs``: ``(label, deploy summary, results)``)."""
    columns = []
    for label, summary, results in runs:
        columns.append(
            "<div class=col>"
            f"<h2>{escape(label)}</h2><div class=meta>{escape(results.run_id)}</div>"
            + "\n".join(_tables(summary))
            + "\n".join(timeline_charts(results, width=600))
            + "</div>"
        )
    css = (
        "body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222}"
        "h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd}"
        ".cols{display:flex;gap:24px;align-items:flex-start}.col{flex:1;min-width:0}"
        "table{border-collapse:collapse;margin:6px 0 12px;font-size:12px}"
        "td,th{padding:3px 7px;border-bottom:1px solid #eee;text-align:right}"
        "th{background:#f6f8fa}.bad{color:#cf222e;font-weight:600}.good{color:#1a7f37}"
        ".chart{border:1px solid #eee;border-radius:4px;display:block;margin:8px 0}"
        ".meta{color:#555}"
    )
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{css}</style></head><body><h1>{escape(title)}</h1>"
        f"<div class=cols>{''.join(columns)}</div></body></html>"
    )
