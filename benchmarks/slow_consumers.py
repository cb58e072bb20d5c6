"""1,000 clients that stop reading: target memory, and what the clients who read still see.

Starts ``wirelab targets serve sse ws`` (memory feed, 1 KiB events at ``--rate``/s, the
slow-consumer policy: ``--send-stall-timeout`` (the target's default, 10 s),
``--socket-send-buffer 64KiB``) and connects ``--control`` WebSocket subscribers that read
everything. Then, per repetition:

1. baseline: the control clients' delivery lag (receive time - event ts) for ``--window`` s;
2. ``--stalled`` clients connect (half SSE ``GET /stream``, half WebSocket subscribers, each
   with a 4 KiB receive buffer) and never read. For about a second the target still writes
   to them (their buffers are filling: 50x the fan-out of the baseline), then it has nothing
   it can write to them and they sit stalled until the stall timeout cuts them;
3. the control clients' lag again: while they are **stalled** (from 2 s after they
   connected, buffers full, until just before the cut) and **after the cut** (another
   ``--window`` s).

Printed per repetition: the target's peak RSS over its baseline (the bound the issue asks to
state), the control lag p99 before, while stalled and after the cut with its change against
before, events the control clients missed (must be 0), and how many stalled SSE streams the
target cut. The lag is sampled from every event of every control client, so a p99 rests on
tens of thousands of samples.

    .venv/bin/python benchmarks/slow_consumers.py --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import websockets

from wirelab.processes import ManagedProcess, free_port
from wirelab_bench.rawws import client_frame, upgrade_request

STALL_TIMEOUT_S = 10.0
#: Seconds after the last stalled client connected by which every buffer is full.
FILLED_S = 2.0


class Control:
    """WebSocket subscribers that read every event and record its lag (µs)."""

    def __init__(self) -> None:
        self.lags: list[tuple[float, int]] = []
        self.missed = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def reader(self, url: str) -> None:
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send(json.dumps({"type": "subscribe", "since": None}))
            last = None
            async for raw in ws:
                now_us = time.time_ns() // 1000
                message = json.loads(raw)
                if message.get("type") != "event":
                    continue
                seq = message["seq"]
                if last is not None and seq != last + 1:
                    self.missed += seq - last - 1
                last = seq
                self.lags.append((time.monotonic(), now_us - message["ts"]))

    def window(self, start: float, end: float) -> dict[str, float]:
        lags = sorted(lag for at, lag in self.lags if start <= at < end)
        cuts = statistics.quantiles(lags, n=100)
        return {"samples": len(lags), "p50_ms": cuts[49] / 1000, "p99_ms": cuts[98] / 1000}


async def stalled_client(port: int, request: bytes) -> socket.socket:
    """Connect with a tiny receive buffer, send ``request`` and never read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, request)
    return sock


def _ws_request() -> bytes:
    # The subscribe frame follows the upgrade request at once; the server reads it after
    # its 101.
    return upgrade_request() + client_frame(0x1, b'{"type":"subscribe","since":null}')


def _stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
        return json.loads(response.read())


async def repetition(args: argparse.Namespace, ports: dict[str, int], pid: int) -> dict:
    target = psutil.Process(pid)
    control = Control()
    url = f"ws://127.0.0.1:{ports['ws']}/ws"
    control.tasks = [asyncio.create_task(control.reader(url)) for _ in range(args.control)]
    await asyncio.sleep(2)  # connected and warm
    base_rss = target.memory_info().rss
    base_start = time.monotonic()
    await asyncio.sleep(args.window)
    base_end = time.monotonic()
    stalled_before = _stats(ports["sse"]).get("stalled_streams", 0)
    sse_request = b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
    socks = []
    for i in range(args.stalled):
        port, request = (ports["sse"], sse_request) if i % 2 == 0 else (ports["ws"], _ws_request())
        socks.append(await stalled_client(port, request))
    connected = time.monotonic()
    peak_rss = base_rss
    # The stalled clients fill their buffers and are cut within the stall timeout; the
    # "after" window starts once that is over.
    after_start = connected + STALL_TIMEOUT_S + 3
    after_end = after_start + args.window
    while time.monotonic() < after_end:
        peak_rss = max(peak_rss, target.memory_info().rss)
        await asyncio.sleep(0.1)
    stalled_cut = _stats(ports["sse"]).get("stalled_streams", 0) - stalled_before
    for sock in socks:
        sock.close()
    for task in control.tasks:
        task.cancel()
    await asyncio.gather(*control.tasks, return_exceptions=True)
    before = control.window(base_start, base_end)
    during = control.window(connected + FILLED_S, connected + STALL_TIMEOUT_S - 1)
    after = control.window(after_start, after_end)
    return {
        "rss_base_mib": base_rss / 2**20,
        "rss_growth_mib": (peak_rss - base_rss) / 2**20,
        "before": before,
        "during": during,
        "after": after,
        "p99_change_during": during["p99_ms"] / before["p99_ms"] - 1,
        "p99_change": after["p99_ms"] / before["p99_ms"] - 1,
        "missed": control.missed,
        "sse_streams_cut": stalled_cut,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stalled", type=int, default=1000)
    parser.add_argument("--control", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per lag window")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ports = {"sse": free_port(), "ws": free_port()}
    argv = [
        sys.executable, "-m", "wirelab", "targets", "serve", "sse", "ws",
        "--ports", f"sse={ports['sse']},ws={ports['ws']}", "--rate", f"{args.rate:g}",
        "--payload-size", "1KiB", "--heartbeat", "1s", "--log-level", "warning",
        "--send-stall-timeout", f"{STALL_TIMEOUT_S:g}s", "--socket-send-buffer", "64KiB",
    ]  # fmt: skip
    log = Path("/tmp") / f"wirelab-slow-consumers-{ports['sse']}.log"
    results = []
    with ManagedProcess(argv, name="targets", log_path=log) as process:
        process.wait_ready(lambda: _ready(ports["sse"]), timeout=20)
        for index in range(args.repeat):
            result = asyncio.run(repetition(args, ports, process.pid))
            results.append(result)
            print(
                f"rep {index + 1}: RSS {result['rss_base_mib']:.0f} MiB "
                f"+{result['rss_growth_mib']:.0f} MiB peak with {args.stalled} stalled; control "
                f"lag p99 {result['before']['p99_ms']:.2f} ms before, "
                f"{result['during']['p99_ms']:.2f} while stalled "
                f"({result['p99_change_during']:+.0%}), {result['after']['p99_ms']:.2f} after "
                f"the cut ({result['p99_change']:+.0%}; p50 {result['before']['p50_ms']:.2f} -> "
                f"{result['after']['p50_ms']:.2f}); missed "
                f"{result['missed']}; SSE streams cut {result['sse_streams_cut']}"
                f" (load {psutil.getloadavg()[0]:.2f})",
                flush=True,
            )
    growth = max(result["rss_growth_mib"] for result in results)
    for key, label in (("p99_change_during", "while stalled"), ("p99_change", "after the cut")):
        changes = sorted(result[key] for result in results)
        print(
            f"control lag p99 change {label}: median {statistics.median(changes):+.0%} "
            f"(range {changes[0]:+.0%} .. {changes[-1]:+.0%})"
        )
    print(f"largest RSS growth {growth:.0f} MiB; {psutil.cpu_count()} cores")
    return 0


def _ready(port: int) -> bool:
    try:
        _stats(port)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
