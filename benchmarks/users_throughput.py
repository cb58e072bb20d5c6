"""What one Locust worker process does with wirelab's users: throughput, and connections held.

Four measurements, each with one generator process per side, against the reference targets
on this machine (the generator, not the target, is usually the bottleneck here; CPU seconds
of every process are printed so a reader can tell):

1. ``rest``: ``RestUser`` (wirelab's checks on) against a plain Locust ``FastHttpUser`` that
   sends the same HTTP requests without them, both at once against the same REST target,
   for the CRUD mix and for ``POST /echo`` alone; the ratio of requests/s (goal >= 0.9) and
   of requests per CPU second;
2. ``ws``: WebSocket echo round trips/s per worker process;
3. ``sse``: SSE events received/s per worker process, with every event fired as a Locust
   ``sse deliver`` request event and with 1% sampled (``--deliver-sample``);
4. ``idle``: idle SSE and WebSocket connections one worker process holds, and its RSS per
   connection (RSS at N connections minus RSS at a few, over N); past ~28k connections the
   users spread their source addresses over 127.0.0.0/8.

    .venv/bin/python benchmarks/users_throughput.py [--only rest,ws,sse,idle]
        [--duration 10] [--users 20] [--idle 5000]

Prints a table and writes JSON to benchmarks/results/users_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wirelab.probes import target_ready
from wirelab.processes import ManagedProcess, free_port
from wirelab_bench.lab import harness_argv, harness_env

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"

WIRELAB_REST = """
from locust import constant, task
from wirelab.users import RestUser, RestUserBase

class Crud(RestUser):
    wait_time = constant(0)

class Echo(RestUserBase):
    wait_time = constant(0)

    @task
    def echo_task(self):
        self.echo()
"""

# The same HTTP requests as RestUser (methods, paths, headers, bodies, weights), sent with
# Locust's FastHttpUser as people write it: no catch_response, no ETag bookkeeping beyond
# what the next request needs, no status checks, default request_type (the method).
PLAIN_REST = """
import json
import uuid
from locust import FastHttpUser, constant, task

BODY = json.dumps({"name": "wirelab", "payload": "x" * 64}).encode()
JSON = {"Content-Type": "application/json", "Accept": "application/json"}

class Crud(FastHttpUser):
    wait_time = constant(0)

    def on_start(self):
        self.items = {}

    def _some(self):
        if not self.items:
            return None
        item = next(iter(self.items))
        self.items[item] = self.items.pop(item)
        return item

    def _create(self):
        r = self.client.post("/items", data=BODY, name="rest POST /items",
                             headers={**JSON, "Idempotency-Key": uuid.uuid4().hex})
        if r.status_code == 201:
            self.items[json.loads(r.content)["id"]] = r.headers.get("ETag")

    @task(2)
    def create(self):
        if len(self.items) >= 20:
            item = next(iter(self.items))
            self.client.delete(f"/items/{item}", name="rest DELETE /items/{id}",
                               headers={"If-Match": self.items.pop(item)})
        self._create()

    @task(4)
    def read(self):
        item = self._some()
        if item is None:
            return self._create()
        r = self.client.get(f"/items/{item}", name="rest GET /items/{id}",
                            headers={"Accept": "application/json",
                                     "If-None-Match": self.items[item]})
        if r.status_code == 200:
            self.items[item] = r.headers.get("ETag")

    @task(2)
    def update(self):
        item = self._some()
        if item is None:
            return self._create()
        r = self.client.put(f"/items/{item}", data=BODY, name="rest PUT /items/{id}",
                            headers={**JSON, "If-Match": self.items[item]})
        self.items[item] = r.headers.get("ETag")

    @task(1)
    def delete(self):
        item = self._some()
        if item is None:
            return self._create()
        self.client.delete(f"/items/{item}", name="rest DELETE /items/{id}",
                           headers={"If-Match": self.items.pop(item)})

    @task(2)
    def echo(self):
        self.client.post("/echo", data=b'{"payload":"%s"}' % (b"x" * 64),
                         headers=JSON, name="rest POST /echo")

class Echo(FastHttpUser):
    wait_time = constant(0)

    @task
    def echo(self):
        self.client.post("/echo", data=b'{"payload":"%s"}' % (b"x" * 64),
                         headers=JSON, name="rest POST /echo")
"""

WS_ECHO = """
from locust import constant, task
from wirelab.users import WebSocketUserBase

class Echo(WebSocketUserBase):
    subscribe_feed = False
    wait_time = constant(0)

    @task
    def echo_task(self):
        self.echo()
"""

SSE_READ = """
from wirelab.users import SseUser

class Reader(SseUser):
    pass
"""

# Feed subscribers on a feed that publishes nothing: connections that only heartbeat.
IDLE = """
from wirelab.users import SseUser, WebSocketFeedUser

SOURCES = {sources!r}

class IdleSse(SseUser):
    source_addresses = SOURCES or None

class IdleWs(WebSocketFeedUser):
    source_addresses = SOURCES or None
"""


class Lab:
    """Target processes for one benchmark, stopped at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[ManagedProcess] = []

    def target(self, protocols: list[str], *args: str) -> dict[str, int]:
        ports = {protocol: free_port() for protocol in protocols}
        argv = [
            sys.executable, "-m", "wirelab", "targets", "serve", *protocols,
            "--ports", ",".join(f"{name}={port}" for name, port in ports.items()),
            "--log-level", "warning", *args,
        ]  # fmt: skip
        log = self.workdir / f"target-{len(self.processes)}.log"
        process = ManagedProcess(argv, name="target", log_path=log).start()
        self.processes.append(process)
        process.wait_ready(
            lambda: all(target_ready(HOST, name, port) for name, port in ports.items()),
            timeout=30,
        )
        return ports

    def stop(self) -> None:
        for process in self.processes:
            process.stop(grace=10)


def cpu_seconds(process: ManagedProcess) -> float:
    import psutil  # noqa: PLC0415

    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


def harness(workdir: Path, name: str, source: str, **options: Any) -> subprocess.Popen[str]:
    """Start one generator process (the wirelab users harness) in the background; the
    options are :func:`wirelab_bench.lab.harness_argv`'s."""
    return subprocess.Popen(
        harness_argv(workdir, name, source, **options),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=harness_env(),
    )


def collect(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    stdout, stderr = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"generator failed ({process.returncode}):\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def requests_total(result: dict[str, Any], exclude_types: tuple[str, ...] = ()) -> int:
    return sum(
        entry["count"]
        for entry in result["stats"].values()
        if entry["request_type"] not in exclude_types and not entry["name"].endswith("deliver")
    )


def failures_total(result: dict[str, Any]) -> int:
    return sum(entry["failures"] for entry in result["stats"].values())


def bench_rest(workdir: Path, duration: float, users: int) -> dict[str, Any]:
    lab = Lab(workdir)
    try:
        port = lab.target(["rest"], "--rate", "0")["rest"]
        target = lab.processes[0]
        url = f"http://{HOST}:{port}"
        figures: dict[str, Any] = {}
        for mix in ("Crud", "Echo"):
            cpu_before = cpu_seconds(target)
            common = {"users": users, "duration": duration, "classes": [mix]}
            wirelab = harness(
                workdir, "wirelab_rest", WIRELAB_REST, args=["--rest-url", url], **common
            )
            plain = harness(workdir, "plain_rest", PLAIN_REST, args=["--host", url], **common)
            wired, bare = collect(wirelab, duration + 60), collect(plain, duration + 60)
            w_rps = requests_total(wired) / wired["elapsed_s"]
            p_rps = requests_total(bare) / bare["elapsed_s"]
            figures[mix.lower()] = {
                "wirelab_rps": round(w_rps),
                "plain_rps": round(p_rps),
                "ratio_rps": round(w_rps / p_rps, 3),
                "wirelab_req_per_cpu_s": round(requests_total(wired) / wired["cpu_s"]),
                "plain_req_per_cpu_s": round(requests_total(bare) / bare["cpu_s"]),
                "ratio_per_cpu_s": round(
                    (requests_total(wired) / wired["cpu_s"])
                    / (requests_total(bare) / bare["cpu_s"]),
                    3,
                ),
                "wirelab_cpu_s": round(wired["cpu_s"], 2),
                "plain_cpu_s": round(bare["cpu_s"], 2),
                "target_cpu_s": round(cpu_seconds(target) - cpu_before, 2),
                "wirelab_failures": failures_total(wired),
                "plain_failures": failures_total(bare),
            }
        return figures
    finally:
        lab.stop()


def bench_ws(workdir: Path, duration: float, users: int) -> dict[str, Any]:
    lab = Lab(workdir)
    try:
        port = lab.target(["ws"], "--rate", "0")["ws"]
        cpu_before = cpu_seconds(lab.processes[0])
        result = collect(
            harness(
                workdir, "ws_echo", WS_ECHO, users=users, duration=duration,
                args=["--ws-url", f"ws://{HOST}:{port}"],
            ),
            duration + 60,
        )  # fmt: skip
        echoes = result["stats"]["ws ws echo"]
        return {
            "users": users,
            "echo_round_trips_per_s": round(echoes["count"] / result["elapsed_s"]),
            "median_ms": echoes["median_ms"],
            "failures": failures_total(result),
            "generator_cpu_s": round(result["cpu_s"], 2),
            "target_cpu_s": round(cpu_seconds(lab.processes[0]) - cpu_before, 2),
            "elapsed_s": round(result["elapsed_s"], 2),
        }
    finally:
        lab.stop()


def bench_sse(workdir: Path, duration: float, users: int, rate: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for sample in ("1", "0.01"):
        lab = Lab(workdir)
        try:
            port = lab.target(["sse"], "--rate", str(rate))["sse"]
            cpu_before = cpu_seconds(lab.processes[0])
            result = collect(
                harness(
                    workdir, "sse_read", SSE_READ, users=users, duration=duration,
                    args=["--sse-url", f"http://{HOST}:{port}", "--deliver-sample", sample],
                ),
                duration + 60,
            )  # fmt: skip
            feed = result["streams"]["sse sse deliver"]
            lag = feed["lag"]
            figures[f"deliver_sample_{sample}"] = {
                "users": users,
                "feed_rate": rate,
                "offered_events_per_s": rate * users,
                "events_received_per_s": round(feed["delivered"] / result["elapsed_s"]),
                "gaps": feed["gaps"],
                "duplicates": feed["duplicates"],
                "lag_mean_ms": round(lag["s"] / lag["n"] / 1000, 2) if lag["n"] else None,
                "generator_cpu_s": round(result["cpu_s"], 2),
                "target_cpu_s": round(cpu_seconds(lab.processes[0]) - cpu_before, 2),
                "elapsed_s": round(result["elapsed_s"], 2),
            }
        finally:
            lab.stop()
    return figures


def bench_idle(workdir: Path, connections: int, hold: float) -> dict[str, Any]:
    """RSS per idle connection: a run with ``connections`` users minus one with a few."""
    sources = [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(connections // 25_000 + 1)]
    source_list = sources if connections > 25_000 else []
    figures: dict[str, Any] = {"source_addresses": len(source_list) or 1}
    for protocol, cls in (("sse", "IdleSse"), ("ws", "IdleWs")):
        lab = Lab(workdir)
        try:
            port = lab.target([protocol], "--rate", "0", "--heartbeat", "15s")[protocol]
            scheme = "http" if protocol == "sse" else "ws"
            runs = {}
            for count in (50, connections):
                spawn_rate = 1000
                duration = count / spawn_rate + hold
                result = collect(
                    harness(
                        workdir, "idle", IDLE.format(sources=source_list), users=count,
                        duration=duration, classes=[cls], spawn_rate=spawn_rate,
                        args=[f"--{protocol}-url", f"{scheme}://{HOST}:{port}"],
                    ),
                    duration + 120,
                )  # fmt: skip
                feed = result["streams"][f"{protocol} {protocol} deliver"]
                runs[count] = {
                    "rss_kb": result["rss_kb"],
                    "connects": feed["connects"],
                    "connect_failures": feed["connect_failures"],
                    "cpu_s": round(result["cpu_s"], 2),
                }
            small, large = runs[50], runs[connections]
            held = large["connects"]
            figures[protocol] = {
                "connections_held": held,
                "connect_failures": large["connect_failures"],
                "rss_mb_at_50": round(small["rss_kb"] / 1024, 1),
                "rss_mb_at_n": round(large["rss_kb"] / 1024, 1),
                "rss_kb_per_connection": round(
                    (large["rss_kb"] - small["rss_kb"]) / max(1, held - small["connects"]), 1
                ),
                "generator_cpu_s": large["cpu_s"],
            }
        finally:
            lab.stop()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="rest,ws,sse,idle")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--sse-users", type=int, default=50)
    parser.add_argument("--sse-rate", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--hold", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "users_throughput.json")
    args = parser.parse_args()
    wanted = {part.strip() for part in args.only.split(",")}
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": " ".join(sys.argv),
    }
    with tempfile.TemporaryDirectory(prefix="wirelab-bench-") as tmp:
        workdir = Path(tmp)
        if "rest" in wanted:
            results["rest"] = bench_rest(workdir, args.duration, args.users)
            print("rest:", json.dumps(results["rest"], indent=2))
        if "ws" in wanted:
            results["ws"] = bench_ws(workdir, args.duration, args.users)
            print("ws:", json.dumps(results["ws"], indent=2))
        if "sse" in wanted:
            results["sse"] = bench_sse(workdir, args.duration, args.sse_users, args.sse_rate)
            print("sse:", json.dumps(results["sse"], indent=2))
        if "idle" in wanted:
            results["idle"] = bench_idle(workdir, args.idle, args.hold)
            print("idle:", json.dumps(results["idle"], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
