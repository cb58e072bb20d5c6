"""Accept rate of the WebSocket target under a connect storm, with and without fan-out.

Each variant starts its own target processes (``wirelab targets serve ws``, several on one
port with ``--reuse-port`` and a Redis feed when asked), then from this script's own client
process (bare asyncio protocols, see ``fanout.py``):

1. connects ``--base`` subscribers (at most 200 handshakes in flight) and lets the feed fan
   out to them: the streams a replica already serves when a storm hits. Meanwhile a probe
   opens a new connection 25 times a second for ``--probe-seconds`` and asks ``/healthz`` on
   the WebSocket port: how long an accept and a request wait while the process fans out;
2. starts ``--storm`` more connections at ``--storm-rate`` per second (0: all at once), each
   one handshake + subscribe, failed if not subscribed within ``--timeout`` seconds of its
   start;
3. reads every target process's 100 ms accept buckets from its admin ``/stats``.

Printed and recorded (``--out``): failed handshakes, time until every storm connection was
subscribed, connect time p50/p99 (from each connection's own start: waiting in the backlog
counts), the mean accept rate (storm / time to all) and the peak 100 ms bucket (x10, per
second), the target's and the client's CPU during the storm and the target's CPU per
connection accepted (the figure least moved by whatever else runs), the load average,
and ratios against the first variant of the same run. A client that needs more CPU than the
target measures itself: keep the storm rate where it does not. The variants, by default:

- ``1 proc no feed``: the reference, nothing but accepts and handshakes;
- ``1 proc feed``: the storm arrives while the process fans the feed out to every stream;
- ``1 proc feed before``: the same with this target's earlier settings: the WebSocket
  listener's backlog of 100 (asyncio's default) and every stream woken in one loop turn
  (``1 proc feed backlog-100`` and ``1 proc feed wake-all`` change one of the two);
- ``2 procs feed``: two processes on the port (``SO_REUSEPORT``), one Redis feed.

Other helpers share this 2-core machine: the ratios within one run are the finding.

    .venv/bin/python benchmarks/accept_rate.py
    .venv/bin/python benchmarks/accept_rate.py --storm 9000 --storm-rate 1500 --repeat 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import uvloop
from fanout import WsSubscriber

from wirelab.lab.replicas import start_redis
from wirelab.limits import listen_backlog, raise_open_files_limit
from wirelab.probes import http_ready
from wirelab.processes import ManagedProcess, free_port, sigterm_as_interrupt

HOST = "127.0.0.1"
RESULTS = Path(__file__).parent / "results" / "accept-rate.json"


@dataclass(frozen=True)
class Variant:
    name: str
    processes: int = 1
    feed: bool = True
    #: ``--listen-backlog`` and ``--wake-slice`` (None: the target's defaults).
    backlog: int | None = None
    wake_slice: int | None = None


VARIANTS = {
    variant.name: variant
    for variant in (
        Variant("1 proc no feed", feed=False),
        Variant("1 proc feed"),
        Variant("1 proc feed wake-all", wake_slice=0),
        Variant("1 proc feed backlog-100", backlog=100),
        Variant("1 proc feed before", backlog=100, wake_slice=0),
        Variant("2 procs feed", processes=2),
    )
}


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def admin_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://{HOST}:{port}/stats", timeout=5) as reply:
        return json.loads(reply.read())


@dataclass
class Opened:
    """What :func:`open_streams` got: the connections, each one's time to subscribed from
    its own start, when the last one was subscribed (from the first start), the failures."""

    streams: list[WsSubscriber]
    connect_s: list[float]
    all_in_s: float
    failed: int


async def open_streams(
    port: int, count: int, *, timeout: float, rate: float = 0.0, in_flight: int | None = None
) -> Opened:
    """Start ``count`` connections, ``rate`` per second (0: at once), each subscribed live."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(in_flight or count)
    started = time.monotonic()
    result = Opened([], [], math.nan, 0)
    last = started

    async def one(index: int) -> None:
        nonlocal last
        if rate > 0:
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
        async with gate:
            begun = time.monotonic()
            connected = loop.create_future()
            try:
                async with asyncio.timeout(timeout):
                    _, subscriber = await loop.create_connection(
                        lambda: WsSubscriber(HOST, port, connected), HOST, port
                    )
                    result.streams.append(subscriber)
                    # Shielded: a late "subscribed" must find the future still pending.
                    await asyncio.shield(connected)
            except (OSError, TimeoutError, RuntimeError):
                result.failed += 1
                return
            now = time.monotonic()
            result.connect_s.append(now - begun)
            last = max(last, now)

    await asyncio.gather(*(one(index) for index in range(count)))
    if result.connect_s:
        result.all_in_s = last - started
    return result


async def probe(port: int, seconds: float, rate: float = 25.0) -> list[float]:
    """Seconds each of ``seconds * rate`` fresh connections took to get ``/healthz``."""
    times: list[float] = []
    started = time.monotonic()
    for index in range(int(seconds * rate)):
        await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
        begun = time.monotonic()
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        times.append(time.monotonic() - begun)
        writer.close()
    return sorted(times)


async def storm(args: argparse.Namespace, port: int, pids: list[int]) -> dict[str, float]:
    base = await open_streams(port, args.base, timeout=60, in_flight=200)
    await asyncio.sleep(1.0)  # fan-out to the base streams is running now
    probed = await probe(port, args.probe_seconds)
    events_before = sum(s.events for s in base.streams)
    target_cpu, client_cpu = cpu_seconds(pids), cpu_seconds([os.getpid()])
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    opened = await open_streams(port, args.storm, timeout=args.timeout, rate=args.storm_rate)
    took = time.monotonic() - started
    delivered = sum(s.events for s in base.streams) - events_before
    target_pct = (cpu_seconds(pids) - target_cpu) / took * 100
    client_pct = (cpu_seconds([os.getpid()]) - client_cpu) / took * 100
    for subscriber in [*base.streams, *opened.streams]:
        if subscriber.transport is not None:
            subscriber.transport.close()
    times = sorted(opened.connect_s)
    return {
        "probe_p50_ms": statistics.median(probed) * 1000,
        "probe_p99_ms": probed[int(len(probed) * 0.99)] * 1000,
        "probe_max_ms": probed[-1] * 1000,
        "base_failed": base.failed,
        "failed": opened.failed,
        "all_connected_s": opened.all_in_s,
        "connect_p50_ms": statistics.median(times) * 1000 if times else math.nan,
        "connect_p99_ms": times[int(len(times) * 0.99)] * 1000 if times else math.nan,
        "mean_accept_per_s": len(times) / opened.all_in_s if times else math.nan,
        "fanout_events_per_s": delivered / took,
        "target_cpu_pct": target_pct,
        "client_cpu_pct": client_pct,
        # What the storm cost the target per connection it accepted (fan-out included):
        # CPU time, which moves less with the machine's other load than wall-clock rates.
        "target_cpu_ms_per_connect": target_pct * took / 100 / len(times) * 1000
        if times
        else math.nan,
        "load_average": (load_before + os.getloadavg()[0]) / 2,
    }


def peak_accepts(admin_ports: list[int]) -> float:
    """The busiest 100 ms bucket over every process, as a per-second rate."""
    buckets: dict[int, int] = {}
    for admin_port in admin_ports:
        for index, count in admin_stats(admin_port)["targets"]["ws"]["accepts"]:
            buckets[index] = buckets.get(index, 0) + count
    return max(buckets.values(), default=0) * 10.0


def run_variant(variant: Variant, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    port = free_port()
    redis = None
    processes: list[ManagedProcess] = []
    admin_ports: list[int] = []
    try:
        extra: list[str] = []
        if variant.processes > 1:
            redis, url = start_redis(workdir / f"redis-{port}")
            extra = ["--reuse-port", "--redis-url", url]
        if variant.backlog is not None:
            extra += ["--listen-backlog", str(variant.backlog)]
        if variant.wake_slice is not None:
            extra += ["--wake-slice", str(variant.wake_slice)]
        rate = args.rate if variant.feed else 0
        for index in range(variant.processes):
            admin_port = free_port()
            argv = [
                sys.executable, "-m", "wirelab", "targets", "serve", "ws", "--port", str(port),
                "--admin-port", str(admin_port), "--rate", f"{rate:g}",
                "--payload-size", str(args.payload_size), "--heartbeat", "120s",
                "--log-level", "warning", *extra,
            ]  # fmt: skip
            log_path = workdir / f"ws-{port}-{index}.log"
            processes.append(ManagedProcess(argv, name="ws-target", log_path=log_path).start())
            admin_ports.append(admin_port)
        for process, admin_port in zip(processes, admin_ports, strict=True):
            process.wait_ready(lambda p=admin_port: http_ready(HOST, p), timeout=30)
        figures = uvloop.run(storm(args, port, [p.pid for p in processes]))
        figures["peak_accept_per_s"] = peak_accepts(admin_ports)
    finally:
        for process in processes:
            process.stop(grace=10)
        if redis is not None:
            redis.stop(grace=5)
    return {"variant": variant.name, **figures}


def print_row(row: dict) -> None:
    print(
        f"{row['variant']:<24} {row['probe_p50_ms']:>9.1f} {row['probe_p99_ms']:>6.0f} "
        f"{row['probe_max_ms']:>6.0f} {row['failed']:>6} {row['all_connected_s']:>8.2f} "
        f"{row['connect_p50_ms']:>8.0f} {row['connect_p99_ms']:>8.0f} "
        f"{row['mean_accept_per_s']:>10.0f} {row['peak_accept_per_s']:>10.0f} "
        f"{row['ratio_mean_accept']:>6.2f} {row['fanout_events_per_s']:>12.0f} "
        f"{row['target_cpu_pct']:>11.0f} {row['client_cpu_pct']:>11.0f} "
        f"{row['target_cpu_ms_per_connect']:>12.2f} {row['load_average']:>5.1f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=6000, help="streams served before the storm")
    parser.add_argument("--storm", type=int, default=6000, help="connections in the storm")
    parser.add_argument(
        "--storm-rate", type=float, default=600, help="storm connections started per second"
    )
    parser.add_argument("--repeat", type=int, default=2, help="back-to-back runs recorded")
    parser.add_argument("--rate", type=float, default=2.0, help="feed events/s")
    parser.add_argument("--payload-size", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=10.0, help="a handshake's deadline")
    parser.add_argument(
        "--probe-seconds", type=float, default=4.0, help="accept probes during fan-out"
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, the first is the reference; known: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sigterm_as_interrupt()  # a cancelled run unwinds through every process's stop
    open_files = raise_open_files_limit()
    if args.base + args.storm + 200 > open_files:
        parser.error(f"--base + --storm must fit this process's file limit ({open_files})")

    print(
        f"ws connect storm: {args.storm} connections at {args.storm_rate:g}/s onto "
        f"{args.base} streams "
        f"(feed {args.rate:g}/s, {args.payload_size} B), handshake deadline {args.timeout:g}s, "
        f"somaxconn {listen_backlog()}, {psutil.cpu_count()} CPUs"
    )
    columns = (
        f"{'variant':<24} {'probe p50':>9} {'p99':>6} {'max':>6} "
        f"{'failed':>6} {'all in s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'mean acc/s':>10} {'peak acc/s':>10} {'ratio':>6} {'fan-out ev/s':>12} "
        f"{'target CPU%':>11} {'client CPU%':>11} {'tCPU ms/conn':>12} {'load':>5}"
    )
    print(columns)
    runs = []
    with tempfile.TemporaryDirectory(prefix="accept-rate-") as tmp:
        for repetition in range(args.repeat):
            print(f"run {repetition + 1} of {args.repeat}")
            rows: list[dict[str, object]] = []
            for name in args.variants.split(","):
                row = run_variant(VARIANTS[name.strip()], args, Path(tmp))
                reference = rows[0]["mean_accept_per_s"] if rows else row["mean_accept_per_s"]
                row["ratio_mean_accept"] = row["mean_accept_per_s"] / reference
                rows.append(row)
                print_row(row)
            runs.append(rows)
    record = {
        "command": " ".join(["benchmarks/accept_rate.py", *sys.argv[1:]]),
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": psutil.cpu_count(),
        "somaxconn": listen_backlog(),
        "base": args.base,
        "storm": args.storm,
        "storm_rate": args.storm_rate,
        "rate": args.rate,
        "timeout_s": args.timeout,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
