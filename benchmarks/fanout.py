"""Fan-out of one SSE or WebSocket target process to many subscribers on loopback.

Starts ``wirelab targets serve ws|sse`` (memory feed) once per publish rate, connects
``--clients`` live-only subscribers from this process, and measures over a window:

* events/s delivered to all clients together, against published/s x clients expected;
* the target's CPU% and this client's CPU% (psutil; 100% = one core);
* delivery lag (receive time - event ts) sampled on the last event of each socket read,
  and how many events the slowest subscriber trails the newest at the end;
* gaps: per client, events received must equal last seq - subscribed since.

The clients are bare asyncio protocols that walk WebSocket frame headers (or SSE's chunked
framing) without decoding every event, so that on a 2-core machine the client is cheaper
per event than the target and the target saturates first. Check the client and other CPU
columns before trusting a figure: on a shared 2-core machine anything else running skews it.

    .venv/bin/python benchmarks/fanout.py --protocol ws --clients 1000 --rates 100,200,400,800
    .venv/bin/python benchmarks/fanout.py --protocol sse --clients 1000 --rates 100,200,400,800
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import psutil
import uvloop

from wirelab.processes import ManagedProcess, free_port
from wirelab_bench.rawws import client_frame, upgrade_request


class WsSubscriber(asyncio.Protocol):
    """One connection: handshake, subscribe live-only, then count event frames."""

    def __init__(self, host: str, port: int, connected: asyncio.Future[None]) -> None:
        self.host, self.port = host, port
        self.connected = connected
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.open = False
        self.since: int | None = None
        self.events = 0
        self.last_seq = 0
        self.lags_us: list[int] = []
        self.sampling = False
        self.closed_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(upgrade_request(f"{self.host}:{self.port}", subprotocol="wirelab.v1"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.connected.set_exception(RuntimeError(bytes(buffer[:80]).decode()))
                return
            del buffer[: end + 4]
            self.open = True
            assert self.transport is not None
            self.transport.write(client_frame(0x1, b'{"type":"subscribe","since":null}'))
        # Frame headers are walked inline, not with rawws.frame_header: this loop runs for
        # every frame 1,000 clients receive, and the client must stay cheaper than the target.
        position, size, last = 0, len(buffer), None
        while size - position >= 2:
            length = buffer[position + 1] & 0x7F
            header = 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
                header = 4
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 10], "big")
                header = 10
            end = position + header + length
            if end > size:
                break
            opcode = buffer[position] & 0x0F
            if opcode == 1:
                if self.since is None:
                    # The first text frame is the "subscribed" reply.
                    self.since = orjson.loads(buffer[position + header : end])["since"]
                    self.last_seq = self.since
                    self.connected.set_result(None)
                else:
                    self.events += 1
                    last = (position + header, end)
            elif opcode == 9:  # ping: answer so the server keeps us
                assert self.transport is not None
                self.transport.write(bytes([0x8A, 0x80]) + b"\0\0\0\0")
            elif opcode == 8:
                self.closed_code = int.from_bytes(buffer[position + header : end][:2], "big")
            position = end
        if last is not None:
            event = orjson.loads(buffer[last[0] : last[1]])
            self.last_seq = event["seq"]
            if self.sampling:
                self.lags_us.append(time.time_ns() // 1000 - event["ts"])
        del buffer[:position]

    @property
    def gaps(self) -> int:
        """Events missing (or duplicated, if negative) between since and the last seq."""
        return (self.last_seq - (self.since or 0)) - self.events


class SseSubscriber(asyncio.Protocol):
    """One SSE stream, live-only: decode the chunked body and count ``\n\n``-ended events."""

    def __init__(self, host: str, port: int, connected: asyncio.Future[None]) -> None:
        self.host, self.port = host, port
        self.connected = connected
        self.transport: asyncio.Transport | None = None
        self.raw = bytearray()
        self.body = bytearray()
        self.open = False
        self.chunk_left = 0
        self.since: int | None = None
        self.events = 0
        self.last_seq = 0
        self.lags_us: list[int] = []
        self.sampling = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(f"GET /stream HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())

    def _dechunk(self) -> None:
        raw = self.raw
        while raw:
            if self.chunk_left == 0:
                end = raw.find(b"\r\n")
                if end < 0:
                    return
                size_text = bytes(raw[:end])
                if not size_text:  # the CRLF after a chunk's data
                    del raw[:2]
                    continue
                self.chunk_left = int(size_text, 16)
                del raw[: end + 2]
                if self.chunk_left == 0:
                    return
            take = min(self.chunk_left, len(raw))
            self.body += raw[:take]
            del raw[:take]
            self.chunk_left -= take

    def data_received(self, data: bytes) -> None:
        self.raw += data
        if not self.open:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.raw.startswith(b"HTTP/1.1 200"):
                self.connected.set_exception(RuntimeError(bytes(self.raw[:80]).decode()))
                return
            del self.raw[: end + 4]
            self.open = True
        self._dechunk()
        body = self.body
        end = body.rfind(b"\n\n")
        if end < 0:
            return
        complete = bytes(body[: end + 2])
        del body[: end + 2]
        count = complete.count(b"\nid: ") + complete.startswith(b"id: ")
        if count == 0:
            return  # retry: hint or heartbeat comments
        last_data = complete.rfind(b"data: ")
        event = orjson.loads(complete[last_data + 6 : complete.index(b"\n", last_data)])
        if self.since is None:
            # Live-only: whatever the first event is, the stream started just before it.
            self.since = event["seq"] - count
            self.connected.set_result(None)
        self.events += count
        self.last_seq = event["seq"]
        if self.sampling:
            self.lags_us.append(time.time_ns() // 1000 - event["ts"])

    @property
    def gaps(self) -> int:
        return (self.last_seq - (self.since or 0)) - self.events


SUBSCRIBERS = {"ws": WsSubscriber, "sse": SseSubscriber}


def _ready(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
        return reply.status == 200


def _machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def _measure(
    protocol: str,
    port: int,
    clients: int,
    warmup: float,
    window: float,
    target_pid: int,
    connect_timeout: float,
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    subscriber_class = SUBSCRIBERS[protocol]
    subscribers: list[WsSubscriber | SseSubscriber] = []
    gate = asyncio.Semaphore(100)  # stay under the listen backlog while connecting

    async def connect_one() -> None:
        async with gate:
            connected = loop.create_future()
            _, subscriber = await loop.create_connection(
                lambda: subscriber_class("127.0.0.1", port, connected), "127.0.0.1", port
            )
            subscribers.append(subscriber)
            await asyncio.wait_for(connected, connect_timeout)
            subscriber.transport.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )

    await asyncio.gather(*(connect_one() for _ in range(clients)))
    await asyncio.sleep(warmup)

    target, me = psutil.Process(target_pid), psutil.Process()
    events_before = sum(s.events for s in subscribers)
    head_before = max(s.last_seq for s in subscribers)
    machine_busy = _machine_busy_seconds()
    target_cpu, my_cpu, started = _cpu_seconds(target), _cpu_seconds(me), time.monotonic()
    for subscriber in subscribers:
        subscriber.sampling = True
    await asyncio.sleep(window)
    elapsed = time.monotonic() - started
    events = sum(s.events for s in subscribers) - events_before
    newest = max(s.last_seq for s in subscribers)
    published = (newest - head_before) / elapsed
    # How far the slowest subscriber trails the newest event any subscriber has seen.
    behind = newest - min(s.last_seq for s in subscribers)
    target_pct = (_cpu_seconds(target) - target_cpu) / elapsed * 100
    my_pct = (_cpu_seconds(me) - my_cpu) / elapsed * 100
    # Whatever else ran on the machine meanwhile: a figure taken beside it is suspect.
    other_pct = (_machine_busy_seconds() - machine_busy) / elapsed * 100 - target_pct - my_pct
    lags = sorted(lag for s in subscribers for lag in s.lags_us)
    for subscriber in subscribers:
        subscriber.sampling = False
        subscriber.transport.close()
    gaps = sum(abs(s.gaps) for s in subscribers)
    return {
        "published": published,
        "delivered": events / elapsed,
        "target_cpu": target_pct,
        "client_cpu": my_pct,
        "other_cpu": max(0.0, other_pct),
        "lag_p50_ms": statistics.median(lags) / 1000 if lags else float("nan"),
        "lag_p99_ms": lags[int(len(lags) * 0.99)] / 1000 if lags else float("nan"),
        "gaps": gaps,
        "behind": behind,
    }


def run_rate(rate: float, args: argparse.Namespace, log_dir: Path) -> dict[str, float]:
    port = free_port()
    argv = [
        sys.executable, "-m", "wirelab", "targets", "serve", args.protocol, "--port", str(port),
        "--rate", str(rate), "--payload-size", str(args.payload_size), "--log-level", "warning",
    ]  # fmt: skip
    log_path = log_dir / f"{args.protocol}-{rate:g}.log"
    target = ManagedProcess(argv, name=f"{args.protocol}-target", log_path=log_path)
    with target:
        target.wait_ready(lambda: _ready(port), timeout=20)
        result = uvloop.run(
            _measure(
                args.protocol,
                port,
                args.clients,
                args.warmup,
                args.window,
                target.pid,
                args.connect_timeout,
            )
        )
    result["rate"] = rate
    # Against what was really published (the publisher may run a little under --rate).
    result["expected"] = result["published"] * args.clients
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=sorted(SUBSCRIBERS), default="ws")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rates", default="100,200,400,800", help="events/s, comma-separated")
    parser.add_argument("--payload-size", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()

    print(
        f"{args.protocol} fan-out: 1 target process, {args.clients} subscribers, "
        f"payload {args.payload_size} B, window {args.window:g}s, "
        f"{psutil.cpu_count()} CPUs, python {sys.version.split()[0]}"
    )
    header = (
        f"{'rate/s':>7} {'published/s':>11} {'expected ev/s':>14} "
        f"{'delivered ev/s':>15} {'ratio':>6} "
        f"{'target CPU%':>11} {'client CPU%':>11} {'other CPU%':>10} "
        f"{'lag p50 ms':>10} {'lag p99 ms':>10} {'max behind':>10} {'gaps':>5}"
    )
    print(header)
    for rate in (float(text) for text in args.rates.split(",")):
        try:
            r = run_rate(rate, args, args.log_dir)
        except TimeoutError:
            print(
                f"{rate:>7g}  could not connect {args.clients} subscribers within "
                f"{args.connect_timeout:g}s: the target is saturated at this rate"
            )
            break
        print(
            f"{r['rate']:>7g} {r['published']:>11,.0f} {r['expected']:>14,.0f} "
            f"{r['delivered']:>15,.0f} "
            f"{r['delivered'] / r['expected']:>6.2f} {r['target_cpu']:>11.0f} "
            f"{r['client_cpu']:>11.0f} {r['other_cpu']:>10.0f} "
            f"{r['lag_p50_ms']:>10.1f} {r['lag_p99_ms']:>10.1f} "
            f"{r['behind']:>10} {r['gaps']:>5}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
