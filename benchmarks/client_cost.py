"""What one stream client costs the generator: CPU per delivered event, memory per idle connection.

For each protocol (SSE, the WebSocket feed, the gRPC Subscribe stream) and each source tree
(the working tree, and with ``--baseline REF`` that git ref's ``wirelab/`` package in the same
session, alternating which goes first), one generator process (``wirelab.users.harness``)
holds ``--clients`` stream users against a fresh ``wirelab targets serve`` process:

- **CPU per event**: the target publishes ``--rate`` events/s; once every user is connected and
  a warm-up has passed, the generator's own process CPU time (all threads) and the events its
  users delivered are read over ``--window`` seconds. CPU per event is their ratio: it
  includes everything the process does while it holds the connections (Locust's loops,
  keepalives), as a user's machine pays it. Every event is still checked and its lag
  recorded: the run fails loudly when a gap, duplicate or reordering shows up, or when the
  lag histogram holds fewer samples than events delivered.
- **memory per idle connection**: the target publishes nothing; the generator's RSS while it
  holds ``--clients`` users (median of samples over the window) minus its RSS holding 10,
  divided by the difference in users, as ``wirelab bench``'s connections part computes it.

Process CPU time, not wall time, is what counts on a shared machine; ``--repeat`` gives the
spread. ``--profile DIR`` also records a py-spy profile of each CPU window (the generator
starts py-spy on itself when its window opens; collapsed stacks, one text file per run, and
the top frames in the JSON record) for reading where the time goes.

    .venv/bin/python benchmarks/client_cost.py --baseline foundation --clients 2000 --rate 2 \\
        --repeat 3

Prints one line per run and a summary with the ratios (working tree / baseline), and writes
everything to ``benchmarks/results/client-cost.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from wirelab.probes import target_ready
from wirelab.processes import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PROTOCOLS: dict[str, tuple[str, str]] = {
    "sse": ("Sse", "--sse-url"),
    "ws": ("Ws", "--ws-url"),
    "grpc": ("Grpc", "--grpc-target"),
}
BASELINE_CLIENTS = 10

#: The generator: the stream users under a local Locust runner, plus a greenlet that waits
#: until every user is connected, lets a warm-up pass, reads CPU, events and RSS over the
#: window, and ends the run. Written to the work directory and run as a script, so the same
#: code drives either source tree.
GENERATOR = """
import json
import os
import sys
import time

import gevent
import locust
from gevent.event import Event
from locust.argument_parser import get_parser
from locust.env import Environment

from wirelab.metrics.recorder import recorder
from wirelab.users import GrpcFeedUser, SseUser, WebSocketFeedUser


class Sse(SseUser):
    pass


class Ws(WebSocketFeedUser):
    pass


class Grpc(GrpcFeedUser):
    pass


CLASS, USERS = sys.argv[1], int(sys.argv[2])
SPAWN_RATE, WARMUP_S, WINDOW_S = (float(value) for value in sys.argv[3:6])
PAGE = os.sysconf("SC_PAGE_SIZE")
_recorder = recorder()
_totals = {}
_take = _recorder.take_delta


def _keeping_take():
    # Whoever takes a delta (the metrics plugin's interval), its figures still count here.
    delta = _take()
    for series in delta["streams"]:
        for key in ("delivered", "gaps", "duplicates", "out_of_order", "connect_failures"):
            _totals[key] = _totals.get(key, 0) + series[key]
        _totals["lag_samples"] = _totals.get("lag_samples", 0) + series["lag"]["n"]
    return delta


_recorder.take_delta = _keeping_take


def _delivered():
    return _totals.get("delivered", 0) + sum(s.delivered for s in _recorder._streams.values())


def _connected():
    return sum(s.connected for s in _recorder._streams.values())


def _rss_kb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE // 1024


def main():
    options = get_parser().parse_args(args=["-f", __file__, *sys.argv[6:]])
    environment = Environment(
        user_classes=[globals()[CLASS]], events=locust.events, parsed_options=options,
        host=options.host, stop_timeout=0,
    )
    runner = environment.create_local_runner()
    locust.events.init.fire(environment=environment, runner=runner, web_ui=None)
    report = {}
    started = time.monotonic()
    runner.start(USERS, spawn_rate=SPAWN_RATE)
    deadline = started + USERS / SPAWN_RATE + 120
    while _connected() < USERS and time.monotonic() < deadline:
        gevent.sleep(0.1)
    report["connected_after_s"] = round(time.monotonic() - started, 2)
    gevent.sleep(WARMUP_S)
    rss = []
    if os.environ.get("COST_WINDOW_FILE"):
        # The driver profiles the window from outside (forking here would fork grpc-core).
        with open(os.environ["COST_WINDOW_FILE"], "w") as marker:
            marker.write(str(os.getpid()))
    cpu0, events0, wall0 = time.process_time(), _delivered(), time.monotonic()
    end = wall0 + WINDOW_S
    while time.monotonic() < end:
        gevent.sleep(min(0.5, max(0.0, end - time.monotonic())))
        rss.append(_rss_kb())
    report.update(
        connected=_connected(),
        window_s=time.monotonic() - wall0,
        cpu_s=time.process_time() - cpu0,
        delivered=_delivered() - events0,
        rss_kb=sorted(rss)[len(rss) // 2],
    )
    runner.quit()
    _keeping_take()
    report["totals"] = _totals
    print(json.dumps(report))


main()
"""


def baseline_tree(ref: str, workdir: Path) -> Path:
    """``ref``'s ``wirelab/`` package extracted into ``workdir`` (put first on PYTHONPATH)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    tree = workdir / f"baseline-{sha}"
    if not tree.exists():
        archive = workdir / f"baseline-{sha}.tar"
        subprocess.run(
            ["git", "archive", "--format=tar", "-o", str(archive), ref, "wirelab"],
            cwd=ROOT,
            check=True,
        )
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
        archive.unlink()
    return tree


def _cores(role: str) -> list[int]:
    # As wirelab bench pins them: the target on the last core, the generator on the rest.
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return available
    return available[-1:] if role == "target" else available[:-1]


def run_once(
    workdir: Path,
    protocol: str,
    tree: Path | None,
    *,
    clients: int,
    rate: float,
    warmup: float,
    window: float,
    spawn_rate: float,
    extra_args: list[str],
    profile: Path | None = None,
) -> dict[str, Any]:
    """One generator process against one fresh target; what it measured in its window."""
    cls, option = PROTOCOLS[protocol]
    port = free_port()
    target_argv = [
        sys.executable, "-m", "wirelab", "targets", "serve", protocol, "--port", str(port),
        "--rate", f"{rate:g}", "--heartbeat", "120s", "--log-level", "warning",
    ]  # fmt: skip
    scheme = {"sse": "http://", "ws": "ws://", "grpc": ""}[protocol]
    script = workdir / "client_cost_generator.py"
    script.write_text(GENERATOR)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WIRELAB_", "LOCUST_"))}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    if profile is not None:
        venv_bin = str(Path(sys.executable).parent)
        py_spy = shutil.which("py-spy", path=venv_bin) or shutil.which("py-spy")
        if py_spy is None:
            raise SystemExit("--profile needs py-spy (pip install py-spy into the venv)")
        profile.parent.mkdir(parents=True, exist_ok=True)
        window_file = workdir / f"window-{protocol}.started"
        window_file.unlink(missing_ok=True)
        env["COST_WINDOW_FILE"] = str(window_file)
    generator_argv = [
        sys.executable, str(script), cls, str(clients), f"{spawn_rate:g}", f"{warmup:g}",
        f"{window:g}", option, f"{scheme}{HOST}:{port}", "--deliver-sample", "0", *extra_args,
    ]  # fmt: skip
    timeout = clients / spawn_rate + 120 + warmup + window + 60
    stderr_path = workdir / f"generator-{protocol}.stderr"
    log = workdir / f"target-{protocol}.log"
    with ManagedProcess(target_argv, name=f"{protocol} target", log_path=log) as target:
        os.sched_setaffinity(target.pid, _cores("target"))
        target.wait_ready(lambda: target_ready(HOST, protocol, port), timeout=30)
        with stderr_path.open("w") as stderr:
            generator = subprocess.Popen(
                generator_argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
                cwd=workdir, start_new_session=True,
            )  # fmt: skip
            os.sched_setaffinity(generator.pid, _cores("generator"))
            spy = None
            if profile is not None:
                spy = _profile_window(py_spy, generator, window_file, profile, window)
            try:
                stdout, _ = generator.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                generator.kill()
                generator.communicate()
                raise
            finally:
                if spy is not None:
                    spy.join(timeout=window + 30)
    if generator.returncode != 0:
        tail = stderr_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{protocol} generator failed ({generator.returncode}):\n{tail}")
    row = json.loads(stdout.strip().splitlines()[-1])
    if profile is not None and Path(f"{profile}.txt").exists():
        row["profile"] = profile_summary(Path(f"{profile}.txt"))
    return row


def _profile_window(
    py_spy: str, generator: subprocess.Popen[str], marker: Path, out: Path, window: float
) -> threading.Thread:
    """Once the generator says its window has started, record it with py-spy."""

    def record() -> None:
        while not marker.exists():
            if generator.poll() is not None:
                return
            time.sleep(0.05)
        subprocess.run(
            [py_spy, "record", "--pid", str(generator.pid), "--rate", "250", "--duration",
             str(max(1, int(window) - 1)), "--format", "raw", "--nonblocking",
             "--output", f"{out}.txt"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
        )  # fmt: skip

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    return thread


def profile_summary(path: Path, top: int = 25) -> dict[str, Any]:
    """The frames a py-spy raw (collapsed-stack) profile spends the most samples in: by
    themselves (``self``) and with what they call (``inclusive``), in % of samples."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count

    def ranked(counts: dict[str, int]) -> list[list[Any]]:
        best = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return [[frame, round(100 * count / max(total, 1), 1)] for frame, count in best]

    return {"samples": total, "self": ranked(own), "inclusive": ranked(inclusive)}


def check(protocol: str, label: str, row: dict[str, Any]) -> None:
    """Every check must have held: no anomaly, every event's lag in the histogram."""
    totals = {"gaps": 0, "duplicates": 0, "out_of_order": 0, "delivered": 0, **row["totals"]}
    totals.setdefault("lag_samples", 0)
    problems = [
        f"{key} {totals[key]}" for key in ("gaps", "duplicates", "out_of_order") if totals[key]
    ]
    if totals["lag_samples"] != totals["delivered"]:
        problems.append(f"lag samples {totals['lag_samples']} != delivered {totals['delivered']}")
    if problems:
        raise RuntimeError(f"{protocol} {label}: {', '.join(problems)}")


def spread(values: list[float]) -> dict[str, float]:
    """Median and the spread around it (min, max, ± as a share of the median)."""
    median = statistics.median(values)
    half = (max(values) - min(values)) / 2
    return {
        "median": round(median, 5),
        "min": round(min(values), 5),
        "max": round(max(values), 5),
        "pm_pct": round(100 * half / median, 1) if median else 0.0,
        "n": len(values),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", default="sse,ws,grpc")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=2.0, help="feed events/s (CPU runs)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--spawn-rate", type=float, default=500.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", help="git ref whose wirelab/ is measured beside the tree")
    parser.add_argument("--parts", default="cpu,memory", help="cpu, memory or both")
    parser.add_argument(
        "--profile", type=Path, help="write a py-spy profile of each CPU window here"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/client-cost.json")
    parser.add_argument("locust_args", nargs="*", help="after --: passed to the users")
    args = parser.parse_args(argv)
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    parts = {p.strip() for p in args.parts.split(",")}
    workdir = Path(tempfile.mkdtemp(prefix="client-cost-", dir=ROOT / "benchmarks/results/tmp"))
    trees: dict[str, Path | None] = {"tree": None}
    if args.baseline:
        trees = {"baseline": baseline_tree(args.baseline, workdir.parent), "tree": None}
    common = {
        "warmup": args.warmup,
        "window": args.window,
        "spawn_rate": args.spawn_rate,
        "extra_args": args.locust_args,
    }
    runs: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    for repetition in range(args.repeat):
        for protocol in protocols:
            labels = list(trees)
            if repetition % 2:
                labels.reverse()
            for label in labels:
                tree = trees[label]
                slot = runs.setdefault(protocol, {}).setdefault(label, {})
                if "cpu" in parts:
                    profile = None
                    if args.profile is not None:
                        profile = args.profile / f"{protocol}-{label}-{repetition}"
                    row = run_once(
                        workdir, protocol, tree, clients=args.clients, rate=args.rate,
                        profile=profile, **common,
                    )  # fmt: skip
                    check(protocol, label, row)
                    row["cpu_ms_per_event"] = 1000 * row["cpu_s"] / max(row["delivered"], 1)
                    slot.setdefault("cpu", []).append(row)
                    print(
                        f"{protocol:<4} {label:<8} cpu: {row['delivered']} events in "
                        f"{row['window_s']:.1f}s, {row['cpu_s']:.2f} CPU-s, "
                        f"{row['cpu_ms_per_event']:.4f} ms/event, {row['connected']} connected",
                        flush=True,
                    )
                if "memory" in parts:
                    idle = {**common, "window": 4.0}
                    few = run_once(
                        workdir, protocol, tree, clients=BASELINE_CLIENTS, rate=0, **idle
                    )
                    many = run_once(workdir, protocol, tree, clients=args.clients, rate=0, **idle)
                    per = (many["rss_kb"] - few["rss_kb"]) / max(
                        many["connected"] - BASELINE_CLIENTS, 1
                    )
                    row = {
                        "baseline_rss_kb": few["rss_kb"],
                        "rss_kb": many["rss_kb"],
                        "connected": many["connected"],
                        "kib_per_connection": per,
                        "idle_cpu_pct": 100 * many["cpu_s"] / many["window_s"],
                    }
                    slot.setdefault("memory", []).append(row)
                    print(
                        f"{protocol:<4} {label:<8} memory: {many['connected']} held, "
                        f"RSS {many['rss_kb'] / 1024:.1f} MiB (10: {few['rss_kb'] / 1024:.1f}), "
                        f"{per:.2f} KiB/connection, idle CPU {row['idle_cpu_pct']:.1f}%",
                        flush=True,
                    )
    summary: dict[str, Any] = {}
    for protocol, labels in runs.items():
        entry: dict[str, Any] = {}
        for label, measured in labels.items():
            figures = {}
            if "cpu" in measured:
                figures["cpu_ms_per_event"] = spread(
                    [r["cpu_ms_per_event"] for r in measured["cpu"]]
                )
            if "memory" in measured:
                figures["kib_per_connection"] = spread(
                    [r["kib_per_connection"] for r in measured["memory"]]
                )
                figures["idle_cpu_pct"] = spread([r["idle_cpu_pct"] for r in measured["memory"]])
            entry[label] = figures
        if "baseline" in entry:
            entry["ratio"] = {
                name: round(entry["tree"][name]["median"] / entry["baseline"][name]["median"], 3)
                for name in entry["tree"]
                if entry["baseline"][name]["median"]
            }
        summary[protocol] = entry
        print(f"{protocol}: {json.dumps(entry)}")
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
        "load_average": os.getloadavg(),
        "settings": {**vars(args), "out": str(args.out), "profile": str(args.profile)},
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1, default=str) + "\n")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
