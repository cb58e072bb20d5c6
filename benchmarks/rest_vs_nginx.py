"""REST target requests/s as a ratio of nginx serving a static response, both under wrk.

Same machine, same run, same wrk settings. nginx runs with one worker and with one per core
(its default), the REST target as its one process; CPU of each server is sampled so a
reader can tell whether a side was saturated. Run:

    .venv/bin/python benchmarks/rest_vs_nginx.py [--duration 10] [--connections 50]

Prints a table and writes JSON to benchmarks/results/rest_vs_nginx.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from wirelab.probes import http_ready
from wirelab.processes import ManagedProcess, free_port

HOST = "127.0.0.1"
RESULTS = Path(__file__).parent / "results"

NGINX_CONF = """
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log;
daemon off;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen {host}:{port} reuseport;
    location / {{ default_type application/json; return 200 '{body}'; }}
  }}
}}
"""


def wrk(url: str, *, duration: float, connections: int, threads: int = 1) -> dict[str, float]:
    """Run wrk and parse requests/s and latency percentiles."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    latencies = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.MULTILINE))
    return {
        "rps": rps,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "p50": latencies.get("50", "?"),
        "p99": latencies.get("99", "?"),
    }


def measure(url: str, pids: list[int], *, duration: float, connections: int) -> dict[str, object]:
    """wrk against ``url`` while sampling the CPU seconds used by ``pids`` (and children)."""
    procs = []
    for pid in pids:
        proc = psutil.Process(pid)
        procs += [proc, *proc.children(recursive=True)]

    def cpu() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in procs if p.is_running())

    before = cpu()
    started = time.monotonic()
    result = wrk(url, duration=duration, connections=connections)
    elapsed = time.monotonic() - started
    result["server_cpu_pct"] = round(100 * (cpu() - before) / elapsed, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} missing: apt-get install {tool}", file=sys.stderr)
            return 2
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    rows: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        rest_port = free_port()
        rest = ManagedProcess(
            [sys.executable, "-m", "wirelab", "targets", "serve", "rest", "--port", str(rest_port)],
            name="rest",
            log_path=Path(tmp) / "rest.log",
        )
        with rest:
            rest.wait_ready(lambda: http_ready(HOST, rest_port), timeout=20)
            request = urllib.request.Request(
                f"http://{HOST}:{rest_port}/items",
                data=b'{"name":"bench"}',
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request) as response:
                body = response.read().decode()
            for path in ("/items/1", "/healthz"):
                rows[f"wirelab rest GET {path}"] = measure(
                    f"http://{HOST}:{rest_port}{path}",
                    [rest.pid],
                    duration=args.duration,
                    connections=args.connections,
                )
        for workers in (1, "auto"):
            port = free_port()
            conf = Path(tmp) / f"nginx-{workers}.conf"
            conf.write_text(
                NGINX_CONF.format(workers=workers, dir=tmp, host=HOST, port=port, body=body)
            )
            nginx = ManagedProcess(
                [nginx_bin, "-c", str(conf)], name="nginx", log_path=Path(tmp) / "nginx.out"
            )
            with nginx:
                nginx.wait_ready(lambda port=port: _answers(port), timeout=10)
                rows[f"nginx static ({workers} worker{'s' if workers != 1 else ''})"] = measure(
                    f"http://{HOST}:{port}/",
                    [nginx.pid],
                    duration=args.duration,
                    connections=args.connections,
                )
    reference = rows["nginx static (auto workers)"]["rps"]
    single = rows["nginx static (1 worker)"]["rps"]
    print(f"machine: {platform.machine()}, {psutil.cpu_count()} cores, {platform.platform()}")
    print(f"wrk -t1 -c{args.connections} -d{args.duration:g}s\n")
    print(f"{'server':<36}{'req/s':>10}{'p50':>10}{'p99':>10}{'cpu%':>7}{'÷nginx':>8}{'÷1w':>7}")
    for name, row in rows.items():
        print(
            f"{name:<36}{row['rps']:>10.0f}{row['p50']:>10}{row['p99']:>10}"
            f"{row['server_cpu_pct']:>7}{row['rps'] / reference:>8.2f}{row['rps'] / single:>7.2f}"
        )
    RESULTS.mkdir(exist_ok=True)
    record = {
        "machine": {"cores": psutil.cpu_count(), "platform": platform.platform()},
        "wrk": {"threads": 1, "connections": args.connections, "duration_s": args.duration},
        "rows": rows,
        "ratio_vs_nginx_auto": {name: row["rps"] / reference for name, row in rows.items()},
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (RESULTS / "rest_vs_nginx.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
