"""The generator against its peers, in the same run, on the same REST (and WebSocket) target.

Closed loop, same number of connections, same request (``POST /echo`` with a 64-byte payload):
wrk, h2load (``--h1``), wirelab's ``RestUserBase`` and a plain Locust ``FastHttpUser`` — then
wirelab's WebSocket echo and artillery's, when artillery is installed. Two questions:

- efficiency: requests (or messages) per CPU-second of the generator process. wrk, h2load and
  artillery are children of this process, so their CPU is what ``getrusage(RUSAGE_CHILDREN)``
  gained while they ran; the harness measures its own from spawning to the end;
- added latency: with the target's ``delay_ms`` hook set to a known service time, the mean
  latency each tool reports minus that time (the loopback, the target's own HTTP work and the
  generator's scheduling are all in it; the part that differs between tools is theirs).

nginx serving a static answer under the same wrk load gives the REST target's ratio to it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from .interleave import alternating_rounds
from .lab import HOST, Generator, Target, children_cpu, cpu_seconds, pinned
from .locustfiles import CLOSED_REST

__all__ = ["artillery_bin", "measure_peers", "merge_figures", "parse_h2load", "parse_wrk"]

PAYLOAD = "x" * 64

NGINX_CONF = """
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
daemon off;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/nginx-body;
  proxy_temp_path {dir}/nginx-proxy;
  fastcgi_temp_path {dir}/nginx-fastcgi;
  uwsgi_temp_path {dir}/nginx-uwsgi;
  scgi_temp_path {dir}/nginx-scgi;
  server {{
    listen {host}:{port} reuseport;
    location / {{ default_type application/json; return 200 '{{"payload":"{payload}"}}'; }}
  }}
}}
"""

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests, requests/s, mean/p50/p99 latency (ms) and errors from ``wrk --latency``."""
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    mean = re.search(r"Latency\s+([\d.]+\w+)", out)
    pct = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+\w+)", out, re.MULTILINE))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*?(\d+).*?(\d+).*?(\d+).*?(\d+)", out)
    return {
        "requests": int(total.group(1)) if total else 0,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "mean_ms": _ms(mean.group(1)) if mean else None,
        "p50_ms": _ms(pct["50"]) if "50" in pct else None,
        "p99_ms": _ms(pct["99"]) if "99" in pct else None,
        "failures": (int(non2xx.group(1)) if non2xx else 0)
        + (sum(int(g) for g in errors.groups()) if errors else 0),
    }


def parse_h2load(out: str) -> dict[str, Any]:
    """Requests, requests/s, mean latency (ms) and failures from h2load's summary."""
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out
    )
    timing = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    return {
        "requests": int(done.group(2)) if done else 0,
        "rps": float(rps.group(1)) if rps else 0.0,
        "mean_ms": _ms(timing.group(3)) if timing else None,
        "p50_ms": None,
        "p99_ms": None,
        "failures": int(done.group(3)) if done else 0,
    }


def artillery_bin() -> str | None:
    """artillery from the project's tools directory, or on PATH."""
    local = Path.cwd() / ".tools" / "artillery" / "node_modules" / ".bin" / "artillery"
    if local.exists():
        return str(local)
    return shutil.which("artillery")


def _child(argv: list[str], timeout: float) -> tuple[str, float, float]:
    """Run a peer; its stdout, the CPU seconds it used and the wall time."""
    before = children_cpu()
    started = time.monotonic()
    out = subprocess.run(
        pinned(argv, "generator"), capture_output=True, text=True, timeout=timeout, check=True
    ).stdout
    return out, children_cpu() - before, time.monotonic() - started


def _row(
    tool: str, figures: dict[str, Any], cpu_s: float, target_cpu_s: float, seconds: float
) -> dict[str, Any]:
    requests = figures["requests"]
    return {
        "tool": tool,
        **figures,
        "generator_cpu_s": round(cpu_s, 3),
        "requests_per_cpu_s": round(requests / cpu_s) if cpu_s > 0 else None,
        "generator_cpu_pct": round(100 * cpu_s / seconds, 1) if seconds else None,
        "target_cpu_pct": round(100 * target_cpu_s / seconds, 1) if seconds else None,
    }


def _wrk(workdir: Path, url: str, connections: int, duration: float, delay_ms: int) -> list[str]:
    script = workdir / f"post-{delay_ms}.lua"
    body = {"payload": PAYLOAD, **({"delay_ms": delay_ms} if delay_ms else {})}
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps(body, separators=(',', ':'))}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]


def _h2load(workdir: Path, url: str, connections: int, duration: float, delay_ms: int) -> list[str]:
    data = workdir / f"body-{delay_ms}.json"
    body = {"payload": PAYLOAD, **({"delay_ms": delay_ms} if delay_ms else {})}
    data.write_text(json.dumps(body, separators=(",", ":")))
    return [
        "h2load",
        "--h1",
        "-t1",
        f"-c{connections}",
        f"-D{duration:g}",
        "--warm-up-time=1",
        "-d",
        str(data),
        "-H",
        "Content-Type: application/json",
        url,
    ]


def _locust(
    workdir: Path, target: Target, cls: str, connections: int, duration: float, delay_ms: int
) -> tuple[dict[str, Any], float, float]:
    env_before = os.environ.get("BENCH_DELAY_MS")
    os.environ["BENCH_DELAY_MS"] = str(delay_ms)
    try:
        result = Generator(
            workdir,
            f"peer-{cls}",
            CLOSED_REST,
            users=connections,
            duration=duration,
            classes=[cls],
            args=[
                "--rest-url" if cls != "WirelabWs" else "--ws-url",
                target.url,
                "--host",
                target.url,
            ],
        ).run()
    finally:
        if env_before is None:
            os.environ.pop("BENCH_DELAY_MS", None)
        else:
            os.environ["BENCH_DELAY_MS"] = env_before
    from .stats import histogram_ms  # noqa: PLC0415

    latency = (result.get("extra") or {}).get("latency") or {}
    name = max(latency, key=lambda n: latency[n]["n"], default=None)
    hist = histogram_ms(latency.get(name) if name else None)
    requests = sum(entry["count"] for entry in result["stats"].values())
    figures = {
        "requests": requests,
        "rps": round(requests / result["elapsed_s"], 1),
        "mean_ms": hist.get("mean"),
        "p50_ms": hist["p50"],
        "p99_ms": hist["p99"],
        "failures": sum(entry["failures"] for entry in result["stats"].values()),
    }
    return figures, result["cpu_s"], result["elapsed_s"]


def _run_http_tools(
    workdir: Path,
    target: Target,
    *,
    connections: int,
    duration: float,
    delay_ms: int,
    tools: list[str],
    rounds: int = 1,
) -> dict[str, Any]:
    """Every tool against ``target`` for ``duration`` seconds in each of ``rounds``
    alternating rounds (see :func:`alternating_rounds`); a row per tool over its rounds."""
    url = f"http://{HOST}:{target.port}/echo"
    runs: dict[str, list[tuple[dict[str, Any], float, float, float]]] = {t: [] for t in tools}
    for order in alternating_rounds(tools, rounds):
        for tool in order:
            target_before = target.cpu()
            if tool == "wrk":
                out, cpu, wall = _child(
                    _wrk(workdir, url, connections, duration, delay_ms), duration + 30
                )
                figures, seconds = parse_wrk(out), wall
            elif tool == "h2load":
                out, cpu, wall = _child(
                    _h2load(workdir, url, connections, duration, delay_ms), duration + 30
                )
                figures, seconds = parse_h2load(out), wall
            else:
                figures, cpu, seconds = _locust(
                    workdir, target, tool, connections, duration, delay_ms
                )
            runs[tool].append((figures, cpu, target.cpu() - target_before, seconds))
    return {
        tool: _row(
            tool,
            merge_figures([figures for figures, *_ in found]),
            sum(cpu for _, cpu, _, _ in found),
            sum(server for _, _, server, _ in found),
            sum(seconds for *_, seconds in found),
        )
        for tool, found in runs.items()
    }


def merge_figures(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One tool's figures over several runs: requests and failures added, requests/s over
    the time the tool measured itself, the mean weighted by requests (exact), and p50/p99 the
    median of the runs' (the tools report percentiles, not histograms to merge)."""
    requests = sum(figures["requests"] for figures in rounds)
    measured_s = sum(figures["requests"] / figures["rps"] for figures in rounds if figures["rps"])
    means = [(f["mean_ms"], f["requests"]) for f in rounds if f["mean_ms"] is not None]
    weight = sum(count for _, count in means)

    def median(key: str) -> float | None:
        values = [figures[key] for figures in rounds if figures[key] is not None]
        return statistics.median(values) if values else None

    return {
        "requests": requests,
        "rps": round(requests / measured_s, 1) if measured_s else 0.0,
        "mean_ms": round(sum(m * c for m, c in means) / weight, 3) if weight else None,
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "failures": sum(figures["failures"] for figures in rounds),
        "rounds": len(rounds),
    }


def _rest_vs_nginx(
    workdir: Path, target: Target, connections: int, duration: float
) -> dict[str, Any]:
    """wrk against the REST target and against nginx (one worker, same core), in alternating
    two-second slices, so both sample the same moments of the machine.

    Run one after the other, the ratio of two 5 s runs moved between 0.33 and 0.63 on the
    bench VM, whose cores' speed for the same work varies up to 1.9x from one second to the
    next (see :mod:`.speed`); alternating slices share that drift out evenly. Returns the
    nginx row (totals over its slices), ``rest_rps`` and ``rest_over_nginx`` (REST requests
    over nginx requests in equal time) and the slowest and fastest slice pair's ratio.
    """
    from wirelab.processes import ManagedProcess, free_port, wait_for_port  # noqa: PLC0415

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(workers=1, dir=workdir, host=HOST, port=port, payload=PAYLOAD)
    )
    # Whole seconds (wrk's -d); 2 s, so wrk's start-up and connection set-up stay a small
    # part of each slice (in 1 s slices nginx was left idle for a quarter of the time).
    slice_s, slices = 2, max(2, math.ceil(duration / 2) + 1)
    urls = {"rest": f"http://{HOST}:{target.port}/echo", "nginx": f"http://{HOST}:{port}/echo"}
    totals = {name: {"requests": 0, "seconds": 0.0, "cpu": 0.0, "server": 0.0} for name in urls}
    pairs: list[float] = []
    # On the server core, as the REST target is: one core each, wrk on the others.
    process = ManagedProcess(
        pinned([nginx, "-c", str(conf)], "server"), name="nginx", log_path=workdir / "nginx.out"
    )
    with process:
        wait_for_port(HOST, port, timeout=10)
        import psutil  # noqa: PLC0415

        pids = [process.pid, *(p.pid for p in psutil.Process(process.pid).children(recursive=True))]
        servers = {"rest": target.cpu, "nginx": lambda: sum(cpu_seconds(pid) for pid in pids)}
        for _ in range(slices):
            got = {}
            for name, url in urls.items():
                before = servers[name]()
                out, cpu, wall = _child(_wrk(workdir, url, connections, slice_s, 0), slice_s + 30)
                figures = parse_wrk(out)
                total = totals[name]
                total["requests"] += figures["requests"]
                total["seconds"] += wall
                total["cpu"] += cpu
                total["server"] += servers[name]() - before
                got[name] = figures["requests"]
            if got["nginx"]:
                pairs.append(got["rest"] / got["nginx"])
    rest, static = totals["rest"], totals["nginx"]
    figures = {
        "requests": static["requests"],
        "rps": round(static["requests"] / (slices * slice_s), 1),
        "mean_ms": None,
        "p50_ms": None,
        "p99_ms": None,
        "failures": 0,
    }
    row = _row(
        "wrk → nginx (1 worker process)",
        figures,
        static["cpu"],
        static["server"],
        static["seconds"],
    )
    return {
        "nginx": row,
        "slices": slices,
        "slice_s": slice_s,
        "rest_rps": round(rest["requests"] / (slices * slice_s), 1),
        "rest_target_cpu_pct": round(100 * rest["server"] / rest["seconds"], 1)
        if rest["seconds"]
        else None,
        "rest_over_nginx": round(rest["requests"] / static["requests"], 3)
        if static["requests"]
        else None,
        "slice_ratio_min": round(min(pairs), 3) if pairs else None,
        "slice_ratio_max": round(max(pairs), 3) if pairs else None,
    }


def _artillery_once(
    binary: str, workdir: Path, target: Target, connections: int, per_vu: int, timeout: float
) -> tuple[int, float, float, float]:
    """One artillery run: messages sent, its CPU seconds, wall seconds, target CPU seconds."""
    script = workdir / f"artillery-ws-{per_vu}.yml"
    script.write_text(
        f"""config:
  target: "ws://{HOST}:{target.port}/ws"
  phases:
    - duration: 1
      arrivalCount: {connections}
  ws:
    subprotocols: ["wirelab.v1"]
scenarios:
  - engine: ws
    flow:
      - loop:
          - send: '{{"type":"echo","id":1,"payload":"{PAYLOAD}"}}'
        count: {per_vu}
"""
    )
    report = workdir / f"artillery-{per_vu}.json"
    report.unlink(missing_ok=True)
    before = children_cpu()
    target_before = target.cpu()
    started = time.monotonic()
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            [binary, "run", "--output", str(report), str(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "ARTILLERY_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"},
        )
    wall = time.monotonic() - started
    cpu = children_cpu() - before
    try:
        counters = json.loads(report.read_text())["aggregate"]["counters"]
    except (OSError, ValueError, KeyError):
        return 0, cpu, wall, target.cpu() - target_before
    return int(counters.get("websocket.messages_sent", 0)), cpu, wall, target.cpu() - target_before


def _artillery(
    workdir: Path, target: Target, connections: int, duration: float
) -> dict[str, Any] | None:
    """artillery's ws engine: messages per CPU-second, with and without its start-up.

    Its ``send`` does not wait for a reply: these are messages sent, where wirelab's figure
    is round trips (send, then the matching reply). A run of one message per virtual user
    measures node's and artillery's fixed start-up cost, which the marginal figure leaves out.
    """
    binary = artillery_bin()
    if binary is None:
        return None
    base_sent, base_cpu, _, _ = _artillery_once(binary, workdir, target, connections, 1, 120)
    sent, cpu, wall, target_cpu = _artillery_once(
        binary, workdir, target, connections, 5000, duration + 120
    )
    if not sent:
        return {"tool": "artillery", "error": "no report from artillery"}
    figures = {
        "requests": sent,
        "rps": None,
        "mean_ms": None,
        "p50_ms": None,
        "p99_ms": None,
        "failures": 0,
    }
    row = _row("artillery", figures, cpu, target_cpu, wall)
    marginal_cpu = cpu - base_cpu
    row["startup_cpu_s"] = round(base_cpu, 3)
    row["marginal_messages_per_cpu_s"] = (
        round((sent - base_sent) / marginal_cpu) if marginal_cpu > 0 else None
    )
    row["note"] = "messages sent, replies not awaited"
    return row


def _relative(throughput: dict[str, Any], reference: str = "PlainLocust") -> dict[str, Any]:
    """Requests per generator CPU-second of each tool over plain Locust's, in this repetition.

    Both Locust processes feel the machine's speed of the moment alike, so their ratio holds
    still where each one's own figure moves by a third between repetitions.
    """
    base = (throughput.get(reference) or {}).get("requests_per_cpu_s")
    return {
        tool: {"per_cpu_s_vs_plain_locust": round(row["requests_per_cpu_s"] / base, 3)}
        for tool, row in throughput.items()
        if base and row.get("requests_per_cpu_s")
    }


def measure_peers(
    workdir: Path,
    *,
    connections: int,
    duration: float,
    delay_ms: int,
    delay_connections: int,
    rounds: int = 1,
    log: Any = print,
) -> dict[str, Any]:
    """One repetition: throughput per generator CPU-second, added latency, nginx, WebSocket.

    Throughput and added latency run every tool ``rounds`` times for ``duration`` seconds, in
    alternating rounds; the nginx comparison and the WebSocket peers run for the rounds'
    total (the nginx comparison alternates slices of its own).
    """
    total_s = duration * rounds
    tools = [t for t in ("wrk", "h2load") if shutil.which(t)] + ["Wirelab", "PlainLocust"]
    out: dict[str, Any] = {}
    with Target(workdir, "rest", "--rate", "0") as target:
        out["throughput"] = _run_http_tools(
            workdir,
            target,
            connections=connections,
            duration=duration,
            delay_ms=0,
            tools=tools,
            rounds=rounds,
        )
        out["relative"] = _relative(out["throughput"])
        out["added_latency"] = _run_http_tools(
            workdir,
            target,
            connections=delay_connections,
            duration=duration,
            delay_ms=delay_ms,
            tools=tools,
            rounds=rounds,
        )
        for row in out["added_latency"].values():
            row["added_mean_ms"] = (
                None if row["mean_ms"] is None else round(row["mean_ms"] - delay_ms, 3)
            )
            row["added_p50_ms"] = (
                None if row["p50_ms"] is None else round(row["p50_ms"] - delay_ms, 3)
            )
        if shutil.which("wrk") and (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
            out["nginx"] = _rest_vs_nginx(workdir, target, connections, total_s)
            log(
                f"  peers nginx        {out['nginx']['nginx']['rps']} req/s, REST target "
                f"{out['nginx']['rest_rps']} req/s in alternating {out['nginx']['slice_s']} s "
                f"slices: REST / nginx = {out['nginx']['rest_over_nginx']} (slice pairs "
                f"{out['nginx']['slice_ratio_min']}-{out['nginx']['slice_ratio_max']})"
            )
    for name, row in out["throughput"].items():
        log(
            f"  peers {name:<12} {row['rps']:>9} req/s, {row['requests_per_cpu_s']} req/CPU-s, "
            f"target cpu {row['target_cpu_pct']}%"
        )
    for name, row in out["added_latency"].items():
        log(f"  peers {name:<12} added mean {row['added_mean_ms']} ms (p50 {row['added_p50_ms']})")
    with Target(workdir, "ws", "--rate", "0") as target:
        ws: dict[str, Any] = {}
        figures, cpu, seconds = _locust(workdir, target, "WirelabWs", connections, total_s, 0)
        ws["wirelab"] = _row("wirelab ws", figures, cpu, 0.0, seconds)
        artillery = _artillery(workdir, target, connections, total_s)
        ws["artillery"] = artillery or {"tool": "artillery", "error": "not installed"}
        out["ws"] = ws
        for name, row in ws.items():
            log(
                f"  peers ws {name:<10} {row.get('rps')} msg/s, "
                f"{row.get('requests_per_cpu_s')} msg/CPU-s "
                f"{row.get('error', '')}"
            )
    return out
