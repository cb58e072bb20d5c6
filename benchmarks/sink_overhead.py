"""What the metrics pipeline costs: generator throughput with the InfluxDB sink on vs off,
and the master's CPU per worker report with 8 workers.

1. Throughput. One local Locust process (users and master in one: the worst case, since
   the sink's encoding and HTTP calls share the generator's core) runs a trivial user that
   fires request events for 20 names as fast as it can. Sink off (the embedded file sink
   only) and on (file + a real influxd via ``influxdb://``) run side by side in pairs, same
   workload, so the machine's other load weighs on both alike; throughput is counted from
   each run's own interval points, first and last interval left out, per wall second and
   per CPU second of the generator. Goal: on/off >= 0.95. And, deterministic where those
   are noisy: the CPU the sinks cost this process per interval, measured in-process.
2. Master CPU per worker report. A master and 8 workers; each worker's 2 users touch 50
   names every 0.5 s, so every 1 s report carries 50 request series. The master's CPU
   seconds over a 10 s steady window divided by the reports it received in that window,
   with the plugin (and the InfluxDB sink) and without it (plain Locust, same report
   interval), so the plugin's share is the difference. Plus the in-process cost of
   ``Aggregate.add`` for one such report.

Run (about 2 minutes; needs influxd, from Debian's ``influxdb`` package):

    .venv/bin/python benchmarks/sink_overhead.py [--seconds 8] [--rounds 4]

Prints the figures and the command; nothing is written outside a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.influxdb import InfluxDBServer  # noqa: E402
from wirelab.metrics.lineprotocol import (  # noqa: E402
    encode_many,
    health_point,
    parse,
    request_point,
    sink_point,
    stream_point,
    users_point,
)
from wirelab.metrics.recorder import Aggregate, Recorder  # noqa: E402
from wirelab.metrics.sinks import open_sink  # noqa: E402
from wirelab.processes import ManagedProcess, free_port  # noqa: E402

LOCUST = str(Path(sys.executable).with_name("locust"))

LOCUSTFILE = textwrap.dedent(
    """
    import json
    import os
    import time

    import locust.runners
    from locust import User, constant, events, task
    from locust.runners import MasterRunner

    if os.environ.get("BENCH_PLUGIN") == "1":
        import wirelab.metrics.plugin
    locust.runners.WORKER_REPORT_INTERVAL = 1.0

    NAMES = [f"bench {i}" for i in range(int(os.environ["BENCH_NAMES"]))]
    PER_TASK = int(os.environ["BENCH_PER_TASK"])
    received = []


    class Bench(User):
        wait_time = constant(float(os.environ["BENCH_WAIT"]))

        @task
        def fire(self):
            fire = self.environment.events.request.fire
            for i in range(PER_TASK):
                fire(
                    request_type="rest",
                    name=NAMES[i % len(NAMES)],
                    response_time=1.0 + i % 7,
                    response_length=100,
                    exception=None,
                    context={},
                )


    @events.worker_report.add_listener
    def _count(client_id, data, **kwargs):
        received.append(time.time())


    @events.quitting.add_listener
    def _dump(environment, **kwargs):
        if isinstance(environment.runner, MasterRunner):
            with open(os.environ["BENCH_OUT"], "w") as out:
                json.dump(received, out)
    """
)


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WIRELAB_", "LOCUST_"))}
    env.update({"WIRELAB_RUN_ID": f"bench-{workdir.name}", "WIRELAB_INTERVAL": "1"})
    env.update(extra)
    return env


def start_generator(workdir: Path, seconds: float, sinks: str) -> ManagedProcess:
    """Start one local Locust run of the trivial user (20 names, no wait)."""
    workdir.mkdir(parents=True)
    (workdir / "bench.py").write_text(LOCUSTFILE)
    env = _env(
        workdir,
        BENCH_PLUGIN="1",
        BENCH_NAMES="20",
        BENCH_PER_TASK="20",
        BENCH_WAIT="0",
        BENCH_OUT=str(workdir / "received.json"),
        WIRELAB_REPORT_DIR=str(workdir / "report"),
        WIRELAB_SINKS=sinks,
    )
    argv = [LOCUST, "-f", str(workdir / "bench.py"), "--headless", "-u", "10", "-r", "10"]
    argv += ["-t", f"{seconds:g}s", "--only-summary", "--loglevel", "WARNING"]
    return ManagedProcess(argv, name="locust-local", env=env, log_path=workdir / "locust.log")


def generator_figures(workdir: Path) -> dict[str, float]:
    """Requests per wall second and per CPU second of a finished generator run.

    Both come from the run's own interval points, first and last interval left out; CPU
    seconds from its ``worker_health`` points (``cpu_percent`` over each 1 s interval).
    """
    metrics = json.loads((workdir / "report" / "metrics.json").read_text())
    if metrics["dropped_points"]:
        raise RuntimeError(f"a sink dropped points: {metrics['sinks']}")
    requests: dict[int, int] = {}
    cpu_s: dict[int, float] = {}
    with (workdir / "report" / "timeseries.lp").open() as lines:
        for point in parse(lines):
            if point.measurement == "requests":
                requests[point.time_ns] = requests.get(point.time_ns, 0) + point.fields["count"]
            elif point.measurement == "worker_health":
                cpu_s[point.time_ns] = point.fields["cpu_percent"] / 100.0
    times = sorted(requests)[1:-1]  # ramp-up and shutdown intervals left out
    counted = sum(requests[t] for t in times[1:])
    return {
        "wall": counted / ((times[-1] - times[0]) / 1e9),
        "cpu": counted / sum(cpu_s[t] for t in times[1:]),
    }


def throughput_pair(workdir: Path, seconds: float, influx_url: str) -> tuple[dict, dict]:
    """Sink off and sink on, run side by side: the machine's other load (a shared 2-core
    box) then weighs on both alike, which sequential runs cannot promise."""
    processes = {
        "off": start_generator(workdir / "off", seconds, ""),
        "on": start_generator(workdir / "on", seconds, influx_url),
    }
    try:
        for process in processes.values():
            process.start()
        deadline = time.monotonic() + seconds + 60
        while any(p.alive for p in processes.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for process in processes.values():
            if process.alive:
                raise RuntimeError(f"locust did not finish\n{process.log_tail()}")
    finally:
        for process in processes.values():
            process.stop(grace=5)
    return generator_figures(workdir / "off"), generator_figures(workdir / "on")


def sink_cpu_per_interval(influx_url: str, intervals: int = 200) -> dict[str, float]:
    """CPU ms this process spends per interval on the file sink alone and on file + InfluxDB
    (encoding included), for a realistic interval: 20 request series, streams, users,
    health and sink points. The InfluxDB part runs to the acknowledged HTTP write."""
    recorder = Recorder()
    for i in range(20 * 200):
        recorder.request("rest", f"bench {i % 20}", 0.001 * (1 + i % 37))
    recorder.stream("sse", "sse deliver").lag.record(1500.0)
    aggregate = Aggregate()
    aggregate.add("local", recorder.take_delta())
    requests, streams = aggregate.take_interval()
    tags = {"run_id": "bench-cpu", "scenario": "bench"}
    health = {"cpu_percent": 50.0, "rss_bytes": 60_000_000, "greenlets": 12, "connections": 1}
    sink_figures = {"buffered": 0, "dropped": 0, "retries": 0, "written": 0}

    def points(now: int) -> list:
        found = [request_point(series, tags, now) for series in requests.values()]
        found += [stream_point(series, tags, now) for series in streams.values()]
        found += [users_point(10, tags, now), health_point("local", health, tags, now)]
        found += [sink_point(name, sink_figures, tags, now) for name in ("file", "influx")]
        return found

    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, urls in (("file", []), ("file+influx", [influx_url])):
            sinks = [open_sink(f"file://{tmp}/{label}.lp"), *(open_sink(url) for url in urls)]
            started = time.process_time()
            for i in range(intervals):
                lines = encode_many(points(1_800_000_000_000_000_000 + i * 1_000_000_000))
                for sink in sinks:
                    sink.write(lines)
                    sink.flush(10.0)
            figures[label] = 1000 * (time.process_time() - started) / intervals
            for sink in sinks:
                sink.close(5.0)
                if sink.stats().dropped:
                    raise RuntimeError(f"{sink.name} dropped points")
    return figures


def master_cpu_run(workdir: Path, influx_url: str, *, plugin: bool, window: float) -> dict:
    """CPU seconds of the master per worker report, over a steady window, 8 workers."""
    workdir.mkdir(parents=True)
    (workdir / "bench.py").write_text(LOCUSTFILE)
    port = free_port()
    env = _env(
        workdir,
        BENCH_PLUGIN="1" if plugin else "0",
        BENCH_NAMES="50",
        BENCH_PER_TASK="50",
        BENCH_WAIT="0.5",
        BENCH_OUT=str(workdir / "received.json"),
    )
    master_env = {**env, "WIRELAB_REPORT_DIR": str(workdir / "report"), "WIRELAB_SINKS": influx_url}
    common = ["-f", str(workdir / "bench.py"), "--headless", "--only-summary"]
    master_argv = [LOCUST, *common, "--master", "--expect-workers", "8", "-u", "16", "-r", "16"]
    master_argv += ["-t", f"{window + 8:g}s", "--master-bind-host", "127.0.0.1"]
    master_argv += ["--master-bind-port", str(port)]
    master = ManagedProcess(
        master_argv,
        name="locust-master",
        env=master_env,
        log_path=workdir / "master.log",
    )
    workers = [
        ManagedProcess(
            [LOCUST, *common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
            name=f"locust-worker-{i}",
            env=env,
            log_path=workdir / f"worker-{i}.log",
        )
        for i in range(8)
    ]
    try:
        master.start()
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 60
        while "All users spawned" not in (workdir / "master.log").read_text(errors="replace"):
            if time.monotonic() > deadline or not master.alive:
                raise RuntimeError(f"the run did not start\n{master.log_tail()}")
            time.sleep(0.2)
        time.sleep(2)  # let the first reports after spawning settle
        process = psutil.Process(master.pid)
        cpu0, t0 = sum(process.cpu_times()[:2]), time.time()
        time.sleep(window)
        cpu1, t1 = sum(process.cpu_times()[:2]), time.time()
        deadline = time.monotonic() + 60
        while master.alive and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for proc in [master, *workers]:
            proc.stop(grace=5)
    received = json.loads((workdir / "received.json").read_text())
    reports = sum(1 for stamp in received if t0 <= stamp <= t1)
    return {
        "cpu_s": cpu1 - cpu0,
        "window_s": t1 - t0,
        "reports": reports,
        "cpu_ms_per_report": 1000 * (cpu1 - cpu0) / reports,
        "cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0),
    }


def aggregate_add_cost(names: int = 50, per_name: int = 100, repeat: int = 400) -> float:
    """µs for the master to merge one worker report of ``names`` series (in-process)."""
    recorder = Recorder()
    for i in range(names * per_name):
        recorder.request("rest", f"bench {i % names}", 0.001 * (1 + i % 97))
    delta = recorder.take_delta()
    aggregate = Aggregate()
    started = time.perf_counter()
    for i in range(repeat):
        aggregate.add(f"w{i % 8}", delta)
        if i % 8 == 7:
            aggregate.take_interval()
    return 1e6 * (time.perf_counter() - started) / repeat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each throughput run")
    parser.add_argument("--rounds", type=int, default=4, help="off/on pairs, run side by side")
    parser.add_argument("--window", type=float, default=10.0, help="master CPU window (s)")
    args = parser.parse_args()
    influxd = shutil.which("influxd") or "/usr/bin/influxd"
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    with tempfile.TemporaryDirectory(prefix="wirelab-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "influxd").mkdir()
        server = InfluxDBServer(influxd, workdir / "influxd")
        server.start()
        try:
            server.query('CREATE DATABASE "bench"')
            influx_url = f"influxdb://{server.host}:{server.port}/bench"
            off, on = [], []
            for round_ in range(args.rounds):
                pair = throughput_pair(workdir / f"pair-{round_}", args.seconds, influx_url)
                off.append(pair[0])
                on.append(pair[1])
                print(
                    f"pair {round_ + 1}: sink off {off[-1]['wall']:,.0f} req/s "
                    f"({off[-1]['cpu']:,.0f} per CPU-s), on {on[-1]['wall']:,.0f} req/s "
                    f"({on[-1]['cpu']:,.0f} per CPU-s)"
                )
            for kind, label in (("wall", "req/s"), ("cpu", "req per CPU-s")):
                ratios = [b[kind] / a[kind] for a, b in zip(off, on, strict=True)]
                print(
                    f"throughput ({label}), local process, 20 names: "
                    f"off median {statistics.median(r[kind] for r in off):,.0f}, "
                    f"on median {statistics.median(r[kind] for r in on):,.0f}; "
                    f"on/off per pair {', '.join(f'{r:.3f}' for r in ratios)}; "
                    f"median {statistics.median(ratios):.3f} (goal >= 0.95)"
                )
            cost = sink_cpu_per_interval(influx_url)
            extra = cost["file+influx"] - cost["file"]
            print(
                f"sink CPU per 1 s interval (26 points): file only {cost['file']:.2f} ms, "
                f"file + InfluxDB {cost['file+influx']:.2f} ms; the InfluxDB sink adds "
                f"{extra:.2f} ms = {extra / 10:.3f}% of a core, i.e. on/off >= "
                f"{1 - extra / 1000:.4f} for a CPU-bound generator"
            )
            with_plugin = master_cpu_run(
                workdir / "cpu-plugin", influx_url, plugin=True, window=args.window
            )
            plain = master_cpu_run(
                workdir / "cpu-plain", influx_url, plugin=False, window=args.window
            )
        finally:
            server.close()
    for label, figures in (("with plugin + influx sink", with_plugin), ("plain Locust", plain)):
        print(
            f"master, 8 workers, 50 names/report, {label}: {figures['cpu_ms_per_report']:.2f} ms "
            f"CPU per report ({figures['reports']} reports in {figures['window_s']:.1f} s, "
            f"master at {figures['cpu_percent']:.1f}% of a core)"
        )
    print(
        f"plugin's share: {with_plugin['cpu_ms_per_report'] - plain['cpu_ms_per_report']:.2f} ms "
        f"per report; Aggregate.add alone (in-process, 50 series x 100 samples each, "
        f"a heavier report than the run's): {aggregate_add_cost():.0f} µs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
