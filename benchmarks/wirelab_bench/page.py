"""The results as Markdown tables (terminal, ``results.md``) and a self-contained HTML page."""

from __future__ import annotations

import re
from html import escape
from typing import Any

from wirelab.report.svg import line_chart

from .request import lower_bound

__all__ = ["markdown", "render_html", "tables"]

Table = tuple[str, list[str], list[list[Any]]]


def _med(value: Any) -> Any:
    """The median of a summarised figure, or the value itself."""
    if isinstance(value, dict) and "median" in value:
        return value["median"]
    return value


def _fmt(value: Any, digits: int = 3) -> str:
    value = _med(value)
    if value is None:
        return "–"
    if isinstance(value, list):  # repetitions that disagree on a label
        return " / ".join(_fmt(item) for item in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        # A median of an even number of repetitions is a float even for counts (78.0).
        if abs(value) >= 1000 or (abs(value) >= 10 and value.is_integer()):
            return f"{value:,.0f}"
        return f"{value:.{digits}g}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _spread(value: Any) -> str:
    if isinstance(value, dict) and value.get("spread_pct") is not None and value.get("n", 0) > 1:
        return f"{_fmt(value)} (±{value['spread_pct'] / 2:.0f}%)"
    return _fmt(value)


def tables(report: dict[str, Any]) -> list[Table]:
    """Every table of the report: title, header, rows (cells are summaries or values)."""
    summary = report.get("summary", {})
    out: list[Table] = []
    request = summary.get("request")
    if request:
        rate = next(iter(request.values())).get("fixed_rate")
        out.append(
            (
                f"Request/response at {_fmt(rate)} req/s (open model): latency, ceiling, CPU",
                [
                    "variant",
                    "p50 ms",
                    "p99 ms",
                    "max sustained req/s (≥: not the target's limit)",
                    "limited by",
                    "server CPU-s / 1k ops",
                    "generator CPU-s / 1k ops",
                    "bytes / op (up+down)",
                    "server RSS MB",
                ],
                [
                    [
                        row.get("label"),
                        _spread(row.get("p50_ms")),
                        _spread(row.get("p99_ms")),
                        _ceiling(report, variant, row),
                        _fmt(row.get("limited_by")),
                        _spread(row.get("target_cpu_s_per_1k_ops")),
                        _spread(row.get("generator_cpu_s_per_1k_ops")),
                        _bytes(row),
                        _fmt(row.get("target_rss_mb")),
                    ]
                    for variant, row in request.items()
                ],
            )
        )
    for key, title in (("push", "Push"), ("push_quiet", "Push, quiet feed (polling waste)")):
        push = summary.get(key)
        if not push:
            continue
        settings = report.get("settings", {}).get(key, {})
        out.append(
            (
                f"{title}: {settings.get('clients')} clients, "
                f"{settings.get('feed_rate')} events/s, "
                f"{settings.get('payload')}-byte payload (read-out: the generator's CPU to "
                "read one event on every client, which it does in turn)",
                [
                    "mechanism",
                    "lag p50 ms",
                    "lag p99 ms",
                    "server CPU-s / 1k events",
                    "generator CPU-s / 1k events",
                    "generator read-out ms",
                    "empty polls %",
                    "requests / event",
                    "bytes / event down",
                    "bytes / event up",
                    "delivered / expected",
                ],
                [
                    [
                        row.get("label"),
                        _spread(row.get("lag_p50_ms")),
                        _spread(row.get("lag_p99_ms")),
                        _spread(row.get("target_cpu_s_per_1k_events")),
                        _spread(row.get("generator_cpu_s_per_1k_events")),
                        _fmt(_read_out_ms(row, settings.get("clients"))),
                        _fmt(row.get("wasted_pct")),
                        _fmt(row.get("requests_per_event")),
                        _spread(row.get("bytes_per_event_down")),
                        _fmt(row.get("bytes_per_event_up")),
                        f"{_fmt(row.get('delivered'))} / {_fmt(row.get('expected'))}",
                    ]
                    for row in push.values()
                ],
            )
        )
    connections = summary.get("connections")
    if connections:
        rows = []
        for protocol, counts in connections.items():
            for count, row in counts.items():
                rows.append(
                    [
                        protocol,
                        count,
                        _fmt(row.get("connections")),
                        _spread(row.get("server_kb_per_conn")),
                        _fmt(row.get("server_rss_mb")),
                        _spread(row.get("generator_kb_per_conn")),
                        _fmt(row.get("generator_rss_mb")),
                    ]
                )
        out.append(
            (
                "Connections: memory per idle stream connection",
                [
                    "protocol",
                    "requested",
                    "held",
                    "server KiB / conn",
                    "server RSS MB",
                    "generator KiB / conn",
                    "generator RSS MB",
                ],
                rows,
            )
        )
    peers = summary.get("peers")
    if peers:
        rows = []
        for tool, row in (peers.get("throughput") or {}).items():
            added = (peers.get("added_latency") or {}).get(tool, {})
            relative = (peers.get("relative") or {}).get(tool, {})
            rows.append(
                [
                    _tool(tool),
                    _spread(row.get("rps")),
                    _spread(row.get("requests_per_cpu_s")),
                    _spread(relative.get("per_cpu_s_vs_plain_locust")),
                    _fmt(row.get("generator_cpu_pct")),
                    _fmt(row.get("target_cpu_pct")),
                    _spread(added.get("added_mean_ms")),
                    _fmt(added.get("added_p50_ms")),
                ]
            )
        for tool, row in (peers.get("ws") or {}).items():
            rows.append(
                [
                    f"{tool} (WebSocket echo"
                    + (", messages sent, replies not awaited)" if tool == "artillery" else ")"),
                    _spread(row.get("rps")),
                    _spread(row.get("requests_per_cpu_s"))
                    + (
                        f"; {_fmt(row['marginal_messages_per_cpu_s'])} without start-up"
                        if row.get("marginal_messages_per_cpu_s")
                        else ""
                    ),
                    "–",
                    _fmt(row.get("generator_cpu_pct")),
                    _fmt(row.get("target_cpu_pct")),
                    row.get("error") or "–",
                    "–",
                ]
            )
        settings = report.get("settings", {}).get("peers", {})
        out.append(
            (
                f"Generators on the same target: {settings.get('connections')} connections, "
                f"closed loop; added latency at delay_ms={settings.get('delay_ms')} "
                f"on {settings.get('delay_connections')} connections",
                [
                    "generator",
                    "req/s",
                    "req / generator CPU-s",
                    "same, over plain Locust's (per repetition)",
                    "generator CPU %",
                    "target CPU %",
                    "added mean ms",
                    "added p50 ms",
                ],
                rows,
            )
        )
        nginx = peers.get("nginx")
        if nginx:
            server = nginx.get("nginx") or {}
            out.append(
                (
                    "REST target vs nginx (wrk, same settings, alternating 2 s slices)",
                    ["server", "req/s", "server CPU %", "REST / nginx"],
                    [
                        [
                            "wirelab REST target (1 process)",
                            _spread(nginx.get("rest_rps")),
                            _fmt(nginx.get("rest_target_cpu_pct")),
                            _spread(nginx.get("rest_over_nginx")),
                        ],
                        [
                            "nginx static " + str(server.get("tool", "")).partition("nginx ")[2],
                            _spread(server.get("rps")),
                            _fmt(server.get("target_cpu_pct")),
                            "",
                        ],
                    ],
                )
            )
    scaling = summary.get("scaling")
    if scaling:
        model = scaling.get("model") or {}
        here = model.get("here") or {}
        rows = []
        for workers, point in (scaling.get("points") or {}).items():
            predicted = here.get(workers, {})
            rows.append(
                [
                    workers,
                    _spread(point.get("steady_rps")),
                    _fmt(point.get("dropped")),
                    _fmt(point.get("steady_worker_cpu_cores")),
                    _spread(point.get("worker_cpu_s_per_1k")),
                    _fmt(point.get("target_cpu_pct")),
                    _fmt(predicted.get("predicted_rps")),
                    _fmt(predicted.get("measured_over_predicted")),
                ]
            )
        out.append(
            (
                "Scaling: wirelab run (master + W workers), REST echo, open model above capacity",
                [
                    "workers",
                    "steady req/s",
                    "dropped starts",
                    "worker CPU cores",
                    "worker CPU-s / 1k",
                    "target CPU %",
                    "model req/s",
                    "measured / model",
                ],
                rows,
            )
        )
        report_cost = scaling.get("report") or {}
        cluster = model.get("cluster") or {}
        out.append(
            (
                "Cluster model",
                ["figure", "value"],
                [
                    [
                        "per-worker capacity (req/s per core)",
                        _fmt(model.get("per_worker_capacity_rps")),
                    ],
                    [
                        "target capacity (req/s, one process)",
                        _fmt(model.get("target_capacity_rps")),
                    ],
                    [
                        "worker report on the wire (bytes, 12 series)",
                        _fmt(report_cost.get("report_bytes")),
                    ],
                    [
                        "master unpack + merge per report (ms)",
                        _fmt(report_cost.get("merge_ms_per_report")),
                    ],
                    [
                        "workers one master core can merge (1 report/s each)",
                        _fmt(cluster.get("workers_per_master_core")),
                    ],
                    [
                        "predicted req/s at 100 workers (a core each)",
                        _fmt(cluster.get("rps_at_100_workers")),
                    ],
                    [
                        "ZeroMQ bytes/s into the master at 100 workers",
                        _fmt(cluster.get("zeromq_bytes_per_s_at_100_workers")),
                    ],
                ],
            )
        )
    scale = summary.get("scale")
    if scale:
        ratios = scale.get("wirelab_over_tsung") or {}
        out.append(
            (
                f"Scale: {_fmt(scale.get('connections'))} idle WebSocket connections to one "
                "target, wirelab beside Tsung 1.7",
                ["tool", "held", "client RSS MB", "KiB / conn", "CPU ms / connect"],
                [
                    [
                        tool,
                        _fmt((scale.get(tool) or {}).get("held")),
                        _fmt((scale.get(tool) or {}).get("rss_mb")),
                        _spread((scale.get(tool) or {}).get("kb_per_conn")),
                        _spread((scale.get(tool) or {}).get("cpu_ms_per_connect")),
                    ]
                    for tool in ("wirelab", "tsung")
                ]
                + [
                    [
                        "wirelab / Tsung",
                        "",
                        "",
                        _fmt(ratios.get("kb_per_conn")),
                        _fmt(ratios.get("cpu_ms_per_connect")),
                    ]
                ],
            )
        )
    claims = report.get("claims")
    if claims:
        out.append(
            (
                "Claims from the reference articles",
                [
                    "source",
                    "claim",
                    "measured as",
                    "claimed",
                    "measured (min–max)",
                    "verdict",
                    "note",
                ],
                [
                    [
                        row["source"],
                        row["claim"],
                        row["measure"],
                        _fmt(row["claimed"])
                        if not isinstance(row["claimed"], list)
                        else f"{row['claimed'][0]:g}–{row['claimed'][1]:g}",
                        f"{_fmt(row['measured'])} ({_fmt(row['min'])}–{_fmt(row['max'])})",
                        f"**{row['verdict']}**",
                        row.get("note") or "",
                    ]
                    for row in claims
                ],
            )
        )
    return out


def _per_rep(report: dict[str, Any], *path: str) -> str:
    """The median, then every repetition's value: for figures that jump between rungs."""
    values = []
    for rep in report.get("repetitions", []):
        value: Any = rep
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        values.append(value)
    summary = _med(_dig(report.get("summary", {}), path))
    if len(values) < 2:
        return _fmt(summary)
    return f"{_fmt(summary)} ({' / '.join(_fmt(v) for v in values)})"


def _read_out_ms(row: dict[str, Any], clients: Any) -> float | None:
    """Milliseconds of generator CPU to read one event on every client: the one generator
    process reads the clients' copies of an event in turn, so a lag p50 near half of this
    is the generator's queue, not the protocol (CPU-s per 1k events are ms per event)."""
    per_event = _med(row.get("generator_cpu_s_per_1k_events"))
    if not isinstance(per_event, int | float) or not isinstance(clients, int):
        return None
    return round(per_event * clients, 2)


def _ceiling(report: dict[str, Any], variant: str, row: dict[str, Any]) -> str:
    """A variant's ceiling, marked "≥" where every ladder ended before the target did."""
    cell = _per_rep(report, "request", variant, "max_sustained_rps")
    return f"≥ {cell}" if lower_bound(row.get("limited_by")) else cell


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _bytes(row: dict[str, Any]) -> str:
    up, down = _med(row.get("bytes_per_op_up")), _med(row.get("bytes_per_op_down"))
    if not isinstance(up, int | float) or not isinstance(down, int | float):
        return "–"
    return f"{up:.0f} + {down:.0f}"


def _tool(tool: str) -> str:
    return {"Wirelab": "wirelab RestUserBase", "PlainLocust": "plain Locust FastHttpUser"}.get(
        tool, tool
    )


def markdown(report: dict[str, Any]) -> str:
    """Every table as GitHub Markdown, headed by the machine and the command."""
    machine = report.get("machine", {})
    lines = [
        f"Machine: {machine.get('cpu_model')}, {machine.get('cores')} cores, kernel "
        f"{machine.get('kernel')}, Python {machine.get('python')}; load average during the run "
        f"{_load(report)}. Command: `{report.get('command')}`; "
        f"{report.get('repeat')} repetition(s), "
        "medians (± half the spread between repetitions)."
        + _pinning(machine)
        + _idle(report)
        + _speed(report)
        + _steal(report),
        "",
    ]
    for title, header, rows in tables(report):
        lines += [f"#### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            lines.append("| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |")
        lines.append("")
    return "\n".join(lines)


def _pinning(machine: dict[str, Any]) -> str:
    pins = machine.get("pinning")
    if not pins:
        return ""
    return (
        f" Targets and nginx ran on core {','.join(map(str, pins['server']))}, single-process "
        f"generators on core {','.join(map(str, pins['generator']))} (taskset); the scaling "
        "runs' master and workers were not pinned."
    )


def _idle(report: dict[str, Any]) -> str:
    idle = report.get("cpu_idle")
    if not idle:
        return ""
    if idle.get("mode") == "poll":
        entries = idle.get("deep_idle_entries")
        counted = (
            f"{entries} halting idle entries in all"
            if entries is not None
            else "the machine has no idle states to count halts in"
        )
        return (
            " Idle CPUs polled instead of halting for the whole run (a 0 µs wake-up latency "
            f"request held on /dev/cpu_dma_latency; {counted})."
        )
    if idle.get("requested"):
        return f" Idle CPUs could halt: --idle poll was asked for, but {idle.get('reason')}."
    if not idle.get("driver"):
        return " Idle CPUs idled as the kernel does without a cpuidle driver."
    return f" Idle CPUs halted as the machine's idle driver ({idle['driver']}) decided."


def _speed(report: dict[str, Any]) -> str:
    speed = report.get("speed_summary") or {}
    if not speed.get("probes"):
        return ""
    return (
        f" Core speed (a fixed Python loop, probed on every core before each part, "
        f"{speed['probes']} probes): median {speed['median_ms']} ms of CPU per unit, fastest "
        f"{speed['fastest_ms']}, slowest {speed['slowest_ms']} (x{speed['slowest_over_fastest']}"
        "); closed-loop throughput moves with it."
    )


def _steal(report: dict[str, Any]) -> str:
    steal = report.get("steal_summary") or {}
    if not steal.get("intervals"):
        return ""
    return (
        f" Host steal (/proc/stat, read at every part's start and end): the hypervisor ran "
        f"something else for {steal['steal_pct']}% of the time this VM's cores wanted to run "
        f"(most: {steal['worst_pct']}%, in the part from '{steal['worst_at']}'); latency "
        "percentiles and CPU per operation move with it."
    )


def _load(report: dict[str, Any]) -> str:
    samples = [sample["load"][0] for sample in report.get("load_average", [])]
    if not samples:
        return "?"
    return f"{min(samples):.1f}–{max(samples):.1f} (1-min, {len(samples)} samples)"


def _chart(series: dict[str, list[tuple[float, float]]], title: str, unit: str) -> str:
    svg = line_chart(series, title=title, unit=unit)
    # The shared chart labels x as seconds; these x axes are rates and worker counts.
    return re.sub(r'(fill="#555">[^<]*?)s</text>', r"\1</text>", svg)


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: the tables, and charts of the rate ladder and the scaling run."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>wirelab bench</title><style>"
        "body{font:14px system-ui,sans-serif;margin:24px;max-width:1200px}"
        "table{border-collapse:collapse;margin:8px 0 24px}"
        "td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}"
        ".held{color:#096}.not{color:#b00}.depends{color:#a60}</style></head><body>",
        "<h1>wirelab bench</h1>",
        f"<p>{escape(markdown(report).split(chr(10))[0])}</p>",
    ]
    for title, header, rows in tables(report):
        parts.append(f"<h2>{escape(title)}</h2><table><tr>")
        parts += [f"<th>{escape(str(cell))}</th>" for cell in header]
        parts.append("</tr>")
        for row in rows:
            cells = []
            for cell in row:
                text = str(cell)
                css = ""
                if text.startswith("**"):
                    text = text.strip("*")
                    css = {"held": "held", "not held": "not", "depends": "depends"}.get(text, "")
                cells.append(f"<td class='{css}'>{escape(text)}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
    ladder: dict[str, list[tuple[float, float]]] = {}
    for rep in report.get("repetitions", [])[:1]:
        for row in (rep.get("request") or {}).values():
            # Sorted: the bisection rungs run after the rung that ended the ladder.
            ladder[row["label"]] = sorted(
                (step["rate"], step["p99_ms"])
                for step in row["steps"]
                if step["p99_ms"] is not None
            )
    if ladder:
        parts.append(_chart(ladder, "p99 (ms) by offered rate (req/s), first repetition", "ms"))
    scaling = (report.get("summary") or {}).get("scaling") or {}
    points = scaling.get("points") or {}
    if points:
        measured = [(float(w), _med(p.get("steady_rps")) or 0.0) for w, p in points.items()]
        model = ((scaling.get("model") or {}).get("here")) or {}
        predicted = [(float(w), float(_med(m.get("predicted_rps")) or 0)) for w, m in model.items()]
        parts.append(
            _chart({"measured": measured, "model": predicted}, "req/s by worker processes", "")
        )
    parts.append("</body></html>")
    return "\n".join(parts)
