"""Push: one feed (same rate, same payload) to the same number of clients over short polling
(1 s), long polling, SSE, WebSocket and gRPC server streaming.

For each mechanism a fresh target process publishes the feed and N clients of one generator
process follow it. Measured: delivery lag (publish ``ts`` to the client reading the event;
for polling that is freshness lag and includes the wait for the next poll), CPU on both
sides per 1,000 delivered events, wasted requests (the REST target's ``/stats`` counts polls
and polls that returned nothing), and bytes on the wire per event in each direction, counted
by the kernel at the server's sockets over the steady state (every client connected; TCP
payload, so HTTP headers and protocol framing are in).

The clients share one generator process, which reads the N copies of each event in turn.
With 50 clients, every mechanism's lag p50 on the bench VM sat at 0.6-1.6x half of the
generator's CPU to read one event on all of them (the page's *read-out*; correlation
0.78-0.92 within each mechanism over 36 repetitions of six runs): the lags rank the
clients' cost per event as much as the protocols, and the page shows the read-out beside
them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .lab import HOST, Generator, Target, bottleneck, run_with_cpu, url_option
from .locustfiles import PUSH
from .stats import histogram_ms, merge_wire, per_1k
from .wire import WireCounter, ws_frame_overhead

__all__ = ["MECHANISMS", "measure_push"]

#: name -> (target protocol, user class, label)
MECHANISMS: dict[str, tuple[str, str, str]] = {
    "short_poll": ("rest", "ShortPoll", "short poll (1 s)"),
    "long_poll": ("rest", "LongPoll", "long poll"),
    "sse": ("sse", "Sse", "SSE"),
    "ws": ("ws", "Ws", "WebSocket"),
    "grpc": ("grpc", "Grpc", "gRPC server stream"),
}


def stream_totals(streams: dict[str, Any]) -> dict[str, Any]:
    """Delivered events, anomalies and merged lag over every stream series of a run."""
    counters = ("delivered", "gaps", "duplicates", "out_of_order", "resets", "reconnects")
    totals: dict[str, Any] = {
        name: sum(s.get(name, 0) for s in streams.values()) for name in counters
    }
    totals["lag"] = histogram_ms(merge_wire(s.get("lag") for s in streams.values()))
    return totals


def measure_one(
    workdir: Path,
    mechanism: str,
    *,
    clients: int,
    feed_rate: float,
    payload: int,
    duration: float,
) -> dict[str, Any]:
    """One mechanism, one repetition."""
    protocol, cls, label = MECHANISMS[mechanism]
    feed = ["--rate", f"{feed_rate:g}", "--payload-size", str(payload), "--heartbeat", "15s"]
    with Target(workdir, protocol, *feed) as target:
        before = target.stats() if protocol == "rest" else None
        generator = Generator(
            workdir,
            f"push-{mechanism}",
            PUSH,
            users=clients,
            duration=duration,
            classes=[cls],
            spawn_rate=max(clients, 100),
            args=[
                url_option(protocol),
                target.url,
                "--deliver-sample",
                "0",
                "--payload-size",
                str(payload),
            ],
        )
        # One sample a second (at idle priority, see wire.py) is enough for the steady
        # window and keeps the sampling out of the lag it would otherwise add to.
        with WireCounter(target.port, interval=1.0) as wire:
            result, cpu = run_with_cpu(target, generator)
        after = target.stats() if protocol == "rest" else None
        # What a WebSocket frame adds to each event (RFC 6455: 2-14 bytes), read exactly
        # off the socket rather than estimated from totals.
        framing = _frame_overhead(target.port) if mechanism == "ws" else None
    totals = stream_totals(result["streams"])
    delivered = totals["delivered"]
    row: dict[str, Any] = {
        "label": label,
        "clients": clients,
        "delivered": delivered,
        "expected": round(feed_rate * clients * result["elapsed_s"]),
        "gaps": totals["gaps"],
        "duplicates": totals["duplicates"],
        "lag_p50_ms": totals["lag"]["p50"],
        "lag_p99_ms": totals["lag"]["p99"],
        **cpu,
        "target_cpu_s_per_1k_events": per_1k(cpu["target_cpu_s"], delivered),
        "generator_cpu_s_per_1k_events": per_1k(cpu["generator_cpu_s"], delivered),
        "bottleneck": bottleneck(cpu),
    }
    if before is not None and after is not None:
        polls = after["polls"] - before["polls"]
        empty = after["empty_polls"] - before["empty_polls"]
        row.update(
            polls=polls,
            empty_polls=empty,
            wasted_pct=round(100 * empty / polls, 1) if polls else None,
            requests_per_event=round(polls / delivered, 3) if delivered else None,
        )
    if framing is not None:
        row["frame_overhead_bytes"] = framing
    steady = wire.steady(min_open=clients)
    if steady is not None and steady[0] > 0:
        seconds, sent, received = steady
        events = feed_rate * clients * seconds
        row.update(
            wire_window_s=round(seconds, 2),
            bytes_per_event_down=round(sent / events, 1),
            bytes_per_event_up=round(received / events, 1),
            bytes_per_event_total=round((sent + received) / events, 1),
            overhead_bytes_per_event=round((sent + received) / events - payload, 1),
        )
    return row


def _frame_overhead(port: int) -> float | None:
    """WebSocket header bytes per event, or None when the feed holds too few events (a
    quiet feed) to read them from."""
    try:
        return ws_frame_overhead(HOST, port, frames=20, timeout=5.0)
    except (TimeoutError, OSError):
        return None


def measure_push(
    workdir: Path,
    *,
    clients: int,
    feed_rate: float,
    payload: int,
    duration: float,
    mechanisms: list[str] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """One repetition of every mechanism."""
    out: dict[str, Any] = {}
    for mechanism in mechanisms or list(MECHANISMS):
        row = measure_one(
            workdir,
            mechanism,
            clients=clients,
            feed_rate=feed_rate,
            payload=payload,
            duration=duration,
        )
        out[mechanism] = row
        log(
            f"  push {mechanism:<11} delivered {row['delivered']}/{row['expected']} "
            f"lag p50 {row['lag_p50_ms']} p99 {row['lag_p99_ms']} ms, "
            f"bytes/event {row.get('bytes_per_event_total')}, "
            f"cpu target {row['target_cpu_pct']}% generator {row['generator_cpu_pct']}%"
        )
    return out
