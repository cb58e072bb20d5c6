"""What the live view costs the Locust master: its CPU with 50 workers' reports a second, with
and without the view being polled.

The master is this process: a real Locust ``MasterRunner`` (ZeroMQ on loopback) with
wirelab's metrics plugin (its file sink writing ``timeseries.lp`` every second) and the live
view, its web UI listening on loopback. The 50 workers are one helper process speaking
Locust's worker protocol with Locust's own client (``locust.rpc``): ``client_ready``, then
every second per worker a heartbeat and a stats report, spread evenly over the second (one
report every 20 ms). Each report is what a worker of the smoke scenario sends: Locust's own
statistics of 19 names, and in ``data["wirelab"]`` the recorder's delta of 14 request series
and 5 streams (histograms of that second's samples), a health sample with the loop-lag
figures of the generator contract and an approximation of the loop-lag histogram that
travels with it. So the master's whole path runs: ZeroMQ receive, msgpack decode, Locust's
stats merge, the plugin's merge, the interval's points and the file sink.

Three conditions in alternating windows (A B C A B C ...), so that the machine's drift weighs
on each alike:

``reports``       nobody looks
``view``          one browser's page polls ``/wirelab/live.json?since=N`` once a second (a
                  poller process, so its own CPU is not the master's)
``view+locust``   and Locust's own UI is open on a wirelab tab: ``/stats/requests`` every
                  2 s (Locust's UI interval), which carries the wirelab rows

The master's CPU is this process's CPU time (every thread: gevent's and ZeroMQ's) per
second of window, in percent of one core; the view's cost is the difference between
conditions, per poll. That difference is small next to the windows' own spread on a shared
machine, so the cost of one request is also measured directly, as CPU of the thread serving
it: ``live.json`` (and the snapshot inside it), and Locust's ``/stats/requests`` with and
without wirelab's rows.

Run (about 2 minutes):

    .venv/bin/python benchmarks/live_view_cost.py [--seconds 10] [--rounds 4] [--workers 50]

Prints the figures and writes ``benchmarks/results/live-view-cost.json`` (``--out`` moves it).
"""

# ruff: noqa: E402 - the repository root goes on sys.path before wirelab is imported

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import gevent
import locust
from locust.env import Environment

import wirelab.webview.plugin  # noqa: F401 - registers the view on locust.events
from wirelab.metrics.plugin import current_run
from wirelab.processes import ManagedProcess, free_port
from wirelab.scenarios import load_scenario
from wirelab.webview.figures import LiveFigures
from wirelab.webview.settings import THRESHOLDS_ENV, thresholds_from_environment

RESULTS = REPO / "benchmarks" / "results" / "live-view-cost.json"
CONDITIONS = ("reports", "view", "view+locust")

#: The helper process: N workers' reports through Locust's own RPC client.
WORKERS_SCRIPT = textwrap.dedent(
    '''
    import math, random, sys, time
    import gevent
    import locust
    from locust.rpc import Message, zmqrpc
    from locust.event import Events
    from locust.stats import RequestStats, setup_distributed_stats_event_listeners
    from wirelab.metrics.histogram import LogHistogram
    from wirelab.metrics.recorder import Recorder

    port, workers, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    REQUESTS = [("rest", f"rest {r}") for r in ("POST /items", "GET /items/{id}",
                "PUT /items/{id}", "DELETE /items/{id}", "POST /echo")] + [
                ("poll", "poll short"), ("poll", "poll long"), ("ws", "ws echo"),
                ("ws", "ws ping"), ("ws", "ws connect"), ("sse", "sse connect"),
                ("grpc", "grpc Echo"), ("grpc", "grpc Chat"), ("grpc", "grpc connect")]
    STREAMS = [("sse", "sse deliver"), ("ws", "ws deliver"), ("grpc", "grpc deliver"),
               ("poll", "poll short"), ("poll", "poll long")]
    rng = random.Random(42)

    def report(worker):
        """One second of a smoke worker: requests, 20 events/s on 2 streams of each kind."""
        recorder, stats = Recorder(), RequestStats()
        for protocol, name in REQUESTS:
            for _ in range(rng.randint(2, 30)):
                ms = rng.lognormvariate(math.log(2.0), 0.7)
                recorder.request(protocol, name, ms / 1000)
                stats.log_request(protocol, name, ms, 64)
        for protocol, name in STREAMS:
            series = recorder.stream(protocol, name)
            series.connected = 2
            for _ in range(40):
                lag_ms = rng.lognormvariate(math.log(3.0), 0.5)
                series.record_event("ok", lag_ms * 1000)
                stats.log_request(protocol, name + " deliver" if protocol == "poll" else name,
                                  lag_ms, 64)
        events = Events()
        setup_distributed_stats_event_listeners(events, stats)
        data = {"user_classes_count": {"SseUser": 2, "WebSocketUser": 2}, "user_count": 10}
        events.report_to_master.fire(client_id=worker, data=data)
        payload = recorder.take_delta()
        loop_lag = LogHistogram()
        for _ in range(1000):  # a 1 ms timer's second
            loop_lag.record(rng.lognormvariate(math.log(150.0), 0.6))
        payload["health"] = {"cpu_percent": rng.uniform(20, 60), "rss_bytes": 80 << 20,
                             "greenlets": 40, "connections": 10, "loop_lag_p50_ms": 0.15,
                             "loop_lag_p99_ms": 0.9, "loop_lag_max_ms": 2.0}
        payload["loop_lag"] = loop_lag.to_wire()
        data["wirelab"] = payload
        return data

    ids = [f"bench-{i:02d}_{i:032x}" for i in range(workers)]
    reports = {worker: Message("stats", report(worker), worker) for worker in ids}
    size = sum(len(m.serialize()) for m in reports.values()) / len(reports)
    clients = {worker: zmqrpc.Client("127.0.0.1", port, worker) for worker in ids}
    for worker, client in clients.items():
        client.send(Message("client_ready", locust.__version__, worker))

    def drain(client):
        while True:
            client.recv()

    for client in clients.values():
        gevent.spawn(drain, client)
    print(f"ready {size:.0f}", flush=True)
    step = 1.0 / workers
    next_at = time.monotonic()
    end = next_at + seconds
    sent = 0
    while time.monotonic() < end:
        for worker in ids:
            next_at += step
            gevent.sleep(max(0.0, next_at - time.monotonic()))
            beat = {"state": "running", "current_cpu_usage": 40.0,
                    "current_memory_usage": 80 << 20}
            clients[worker].send(Message("heartbeat", beat, worker))
            clients[worker].send(reports[worker])
            sent += 1
    print(f"sent {sent}", flush=True)
    '''
)

#: The helper that plays a browser: GET ``path`` every ``interval`` seconds.
POLLER_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import httpx
    url, interval, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    since, polls, size = 0, 0, 0
    with httpx.Client(timeout=10) as client:
        while True:
            started = time.monotonic()
            body = client.get(url.replace("SINCE", str(since))).content
            polls += 1
            size += len(body)
            if "live.json" in url:
                data = __import__("json").loads(body)
                since = data["annotations"]["from"] + len(data["annotations"]["items"])
            with open(out + ".tmp", "w") as f:
                f.write(f"{polls} {size}")
            os.replace(out + ".tmp", out)  # the master's reader never sees half a file
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    """
)


def _script(tmp: Path, name: str, body: str) -> Path:
    path = tmp / name
    path.write_text(body)
    return path


def _poller(tmp: Path, url: str, interval: float, tag: str) -> tuple[ManagedProcess, Path]:
    out = tmp / f"poll-{tag}.txt"
    out.unlink(missing_ok=True)
    process = ManagedProcess(
        [sys.executable, str(_script(tmp, "poller.py", POLLER_SCRIPT)), url, str(interval),
         str(out)],
        name=f"poller-{tag}",
        log_path=tmp / f"poller-{tag}.log",
    ).start()  # fmt: skip
    return process, out


def _read_polls(out: Path) -> tuple[int, int]:
    try:
        polls, size = out.read_text().split()
    except (FileNotFoundError, ValueError):
        return 0, 0
    return int(polls), int(size)


def _master(tmp: Path, workers: int) -> tuple[Environment, str, int]:
    os.environ["WIRELAB_REPORT_DIR"] = str(tmp / "run")
    os.environ["WIRELAB_RUN_ID"] = "live-view-cost"
    os.environ[THRESHOLDS_ENV] = json.dumps(load_scenario("smoke").thresholds)
    sys.argv = ["locust"]  # Locust's web UI reads its options from the command line
    environment = Environment(events=locust.events)
    master_port = free_port()
    runner = environment.create_master_runner("127.0.0.1", master_port)
    web_port = free_port()
    web_ui = environment.create_web_ui("127.0.0.1", web_port, delayed_start=True)
    environment.events.init.fire(environment=environment, runner=runner, web_ui=web_ui)
    web_ui.start()
    environment.events.test_start.fire(environment=environment)
    return environment, f"http://127.0.0.1:{web_port}", master_port


def measure(seconds: float, rounds: int, workers: int, requests: int = 20) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="live-view-cost-"))
    environment, base, master_port = _master(tmp, workers)
    total = seconds * rounds * len(CONDITIONS) + 150  # and the per-request part after
    helper = ManagedProcess(
        [sys.executable, str(_script(tmp, "workers.py", WORKERS_SCRIPT)), str(master_port),
         str(workers), str(total)],
        name="workers",
        env={**os.environ, "PYTHONPATH": str(REPO)},
        log_path=tmp / "workers.log",
    ).start()  # fmt: skip
    windows: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 120
        while len(environment.runner.clients) < workers or "ready" not in helper.log_tail():
            if time.monotonic() > deadline or not helper.alive:
                raise RuntimeError(f"the workers did not connect\n{helper.log_tail()}")
            gevent.sleep(0.2)
        report_bytes = float(helper.log_tail().split("ready ")[1].split()[0])
        run = current_run(locust.events)
        assert run is not None
        gevent.sleep(3)  # every worker's first report merged, the interval loop running
        for round_index in range(rounds):
            for condition in CONDITIONS:
                pollers = []
                if condition != "reports":
                    pollers.append(_poller(tmp, f"{base}/wirelab/live.json?since=SINCE", 1.0, "v"))
                if condition == "view+locust":
                    pollers.append(_poller(tmp, f"{base}/stats/requests", 2.0, "l"))
                # The pollers' start-up is theirs, not the window's: it opens on their first poll.
                deadline = time.monotonic() + 60
                while not all(out.exists() for _, out in pollers):
                    if time.monotonic() > deadline:
                        raise RuntimeError("a poller never got an answer from the web UI")
                    gevent.sleep(0.1)
                polls_before = [_read_polls(out) for _, out in pollers]
                reports_before = run.aggregate.reports
                cpu_before, wall_before = time.process_time(), time.monotonic()
                gevent.sleep(seconds)
                cpu = time.process_time() - cpu_before
                wall = time.monotonic() - wall_before
                reports = run.aggregate.reports - reports_before
                polls = [
                    tuple(a - b for a, b in zip(_read_polls(out), before, strict=True))
                    for (_, out), before in zip(pollers, polls_before, strict=True)
                ]
                for process, _ in pollers:
                    process.stop(grace=2)
                window = {
                    "round": round_index,
                    "condition": condition,
                    "seconds": round(wall, 3),
                    "cpu_percent": round(100 * cpu / wall, 2),
                    "reports_per_s": round(reports / wall, 1),
                    "view_polls": polls[0][0] if polls else 0,
                    "view_bytes": polls[0][1] if polls else 0,
                    "locust_polls": polls[1][0] if len(polls) > 1 else 0,
                }
                windows.append(window)
                print(
                    f"  round {round_index} {condition:<12} CPU {window['cpu_percent']:6.2f}% "
                    f"reports/s {window['reports_per_s']:6.1f} polls {window['view_polls']}"
                    f"+{window['locust_polls']}",
                    flush=True,
                )
        snapshot_ms = _snapshot_cost(environment)
        requests_ms = _request_cost(environment, requests)
    finally:
        helper.stop(grace=5)
        environment.runner.quit()
    summary = _summarise(windows, workers, report_bytes, snapshot_ms, seconds, rounds)
    summary["request_cpu_ms"] = requests_ms
    return summary


def _snapshot_cost(environment: Environment, repeat: int = 40) -> float:
    """One snapshot's compute time (ms of this thread's CPU, median), cache off."""
    thresholds, _ = thresholds_from_environment()
    figures = LiveFigures(environment, thresholds)
    times = []
    for _ in range(repeat):
        figures._cached = None  # measure the work, not the cache
        started = time.thread_time()
        figures.snapshot()
        times.append((time.thread_time() - started) * 1000)
    return round(statistics.median(times), 3)


def _request_cost(environment: Environment, repeat: int = 20) -> dict[str, float]:
    """CPU of one request as the web UI serves it (ms of the serving thread, median): the
    view's ``live.json``, and Locust's ``/stats/requests`` with and without wirelab's rows.

    Thread CPU, not process CPU: ZeroMQ's I/O thread keeps receiving reports meanwhile. The
    requests are 0.55 s apart, as a browser's once-a-second poll misses the 0.5 s cache.
    """
    app = environment.web_ui.app
    client = app.test_client()

    def median_ms(path: str) -> float:
        times = []
        for _ in range(repeat):
            gevent.sleep(0.55)
            started = time.thread_time()
            response = client.get(path)
            times.append((time.thread_time() - started) * 1000)
            assert response.status_code == 200, path
        return round(statistics.median(times), 3)

    figures = {"live_json": median_ms("/wirelab/live.json?since=0")}
    figures["locust_stats_with_wirelab_rows"] = median_ms("/stats/requests")
    hooks = app.after_request_funcs[None]
    ours = [hook for hook in hooks if hook.__name__ == "_with_wirelab_rows"]
    for hook in ours:
        hooks.remove(hook)
    try:
        figures["locust_stats_alone"] = median_ms("/stats/requests")
    finally:
        hooks.extend(ours)
    return figures


def _summarise(
    windows: list[dict[str, Any]],
    workers: int,
    report_bytes: float,
    snapshot_ms: float,
    seconds: float,
    rounds: int,
) -> dict[str, Any]:
    by: dict[str, dict[str, Any]] = {}
    for condition in CONDITIONS:
        rows = [w for w in windows if w["condition"] == condition]
        by[condition] = {
            "cpu_percent_median": round(statistics.median(w["cpu_percent"] for w in rows), 2),
            "cpu_percent": [w["cpu_percent"] for w in rows],
            "reports_per_s_median": round(statistics.median(w["reports_per_s"] for w in rows), 1),
            "view_polls": sum(w["view_polls"] for w in rows),
            "view_bytes_per_poll": round(
                sum(w["view_bytes"] for w in rows) / max(1, sum(w["view_polls"] for w in rows))
            ),
            "locust_polls": sum(w["locust_polls"] for w in rows),
        }
    base = by["reports"]["cpu_percent_median"]
    # Paired per round: each window against the round's own "reports" window.
    extra_per_poll = []
    for round_index in range(rounds):
        row = {w["condition"]: w for w in windows if w["round"] == round_index}
        polls_per_s = row["view"]["view_polls"] / row["view"]["seconds"]
        if polls_per_s:
            extra = (row["view"]["cpu_percent"] - row["reports"]["cpu_percent"]) / 100
            extra_per_poll.append(1000 * extra / polls_per_s)
    return {
        "command": "benchmarks/live_view_cost.py "
        f"--seconds {seconds:g} --rounds {rounds} --workers {workers}",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": _cpu_model(),
            "kernel": platform.release(),
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "workers": workers,
        "report_bytes": round(report_bytes),
        "conditions": by,
        "ratios": {
            name: round(by[name]["cpu_percent_median"] / base, 3) if base else None
            for name in CONDITIONS
        },
        "view_cpu_ms_per_poll_median": round(statistics.median(extra_per_poll), 2)
        if extra_per_poll
        else None,
        "snapshot_compute_ms": snapshot_ms,
        "windows": windows,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one window")
    parser.add_argument("--rounds", type=int, default=4, help="windows per condition")
    parser.add_argument("--workers", type=int, default=50, help="simulated workers")
    parser.add_argument(
        "--requests", type=int, default=20, help="timed requests per page for the per-request CPU"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or min(args.rounds, args.workers, args.requests) < 1:
        parser.error("--seconds must be > 0, --rounds, --workers and --requests at least 1")
    print(f"master with {args.workers} workers' reports a second; {args.rounds} rounds of "
          f"{args.seconds:g}s per condition")  # fmt: skip
    result = measure(args.seconds, args.rounds, args.workers, args.requests)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    by = result["conditions"]
    print(
        f"\nreport size {result['report_bytes']:,} bytes; one snapshot "
        f"{result['snapshot_compute_ms']} ms of CPU"
    )
    for name in CONDITIONS:
        print(
            f"  {name:<12} master CPU {by[name]['cpu_percent_median']:6.2f}% of a core "
            f"(x{result['ratios'][name]}), reports/s {by[name]['reports_per_s_median']}"
        )
    print(f"  from the windows: {result['view_cpu_ms_per_poll_median']} ms of master CPU per poll")
    cost = result["request_cpu_ms"]
    print(
        f"  one request, serving thread's CPU: live.json {cost['live_json']} ms; Locust's "
        f"/stats/requests {cost['locust_stats_alone']} ms alone, "
        f"{cost['locust_stats_with_wirelab_rows']} ms with wirelab's rows"
    )
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
