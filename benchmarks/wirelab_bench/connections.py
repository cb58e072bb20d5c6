"""Connections: memory per idle stream connection (SSE, WebSocket, gRPC) on both sides.

For each protocol and count N, a fresh target (publishing nothing, heartbeats slower than the
run) takes N idle subscribers from one generator process. While they are held, the target's
and the generator's RSS and the number of sockets the target holds are sampled; the median
of the samples with the most connections is kept (see :func:`held_sample`). Per connection:

- server: (RSS at N − RSS of the same fresh target before any client) / N;
- generator: (RSS at N − RSS of a generator holding 10) / (N − 10), so the interpreter, Locust
  and the protocol's client library are not charged to the connections.
"""

from __future__ import annotations

import statistics
import threading
from pathlib import Path
from typing import Any

import psutil

from .lab import Generator, Target, url_option
from .locustfiles import IDLE

__all__ = ["PROTOCOLS", "held_sample", "measure_connections"]

PROTOCOLS: dict[str, str] = {"sse": "IdleSse", "ws": "IdleWs", "grpc": "IdleGrpc"}
BASELINE_CLIENTS = 10


def held_sample(samples: list[dict[str, int]]) -> dict[str, int]:
    """What the held connections cost: among the samples with the most connections, the
    median of each figure.

    Not the last such sample: the generator's final one can fall while it tears its users
    down, with the server still counting every socket, and that teardown allocates. Measured
    (SSE, 1,000 connections): the steady samples read 79.1 MB and the teardown one 86.8 MB
    in one run of six, which made the generator's cost per connection 20 or 13 KiB from one
    repetition to the next.
    """
    if not samples:
        return {"connections": -1, "server_rss_kb": 0, "generator_rss_kb": 0}
    most = max(sample["connections"] for sample in samples)
    held = [sample for sample in samples if sample["connections"] == most]
    return {
        key: int(statistics.median(sample[key] for sample in held))
        for key in ("connections", "server_rss_kb", "generator_rss_kb")
    }


def _hold(
    workdir: Path, protocol: str, count: int, spawn_rate: float, hold: float
) -> dict[str, Any]:
    with Target(workdir, protocol, "--rate", "0", "--heartbeat", "120s") as target:
        server = psutil.Process(target.pid)
        base_rss = server.memory_info().rss // 1024
        base_fds = server.num_fds()
        generator = Generator(
            workdir,
            f"idle-{protocol}",
            IDLE,
            users=count,
            duration=count / spawn_rate + hold,
            classes=[PROTOCOLS[protocol]],
            spawn_rate=spawn_rate,
            args=[url_option(protocol), target.url],
        ).start()
        samples: list[dict[str, int]] = []
        done = threading.Event()

        def sample() -> None:
            client = psutil.Process(generator.pid)
            while not done.wait(0.5):
                try:
                    samples.append(
                        {
                            "connections": server.num_fds() - base_fds,
                            "server_rss_kb": server.memory_info().rss // 1024,
                            "generator_rss_kb": client.memory_info().rss // 1024,
                        }
                    )
                except psutil.NoSuchProcess:
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = generator.result(timeout=count / spawn_rate + hold + 180)
        finally:
            done.set()
            sampler.join()
    best = held_sample(samples)
    return {**best, "server_base_rss_kb": base_rss, "generator_cpu_s": round(result["cpu_s"], 2)}


def measure_connections(
    workdir: Path,
    *,
    counts: list[int],
    hold: float,
    spawn_rate: float = 1000,
    protocols: list[str] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """One repetition: every protocol at every count."""
    out: dict[str, Any] = {}
    for protocol in protocols or list(PROTOCOLS):
        baseline = _hold(workdir, protocol, BASELINE_CLIENTS, spawn_rate, 2.0)
        rows: dict[str, Any] = {}
        for count in counts:
            held = _hold(workdir, protocol, count, spawn_rate, hold)
            connections = max(held["connections"], 1)
            rows[str(count)] = {
                "requested": count,
                "connections": held["connections"],
                "server_rss_mb": round(held["server_rss_kb"] / 1024, 1),
                "server_kb_per_conn": round(
                    (held["server_rss_kb"] - held["server_base_rss_kb"]) / connections, 2
                ),
                "generator_rss_mb": round(held["generator_rss_kb"] / 1024, 1),
                "generator_kb_per_conn": round(
                    (held["generator_rss_kb"] - baseline["generator_rss_kb"])
                    / max(connections - BASELINE_CLIENTS, 1),
                    2,
                ),
            }
            log(
                f"  connections {protocol:<4} {count:>5}: held {held['connections']}, server "
                f"{rows[str(count)]['server_kb_per_conn']} KiB/conn, generator "
                f"{rows[str(count)]['generator_kb_per_conn']} KiB/conn"
            )
        out[protocol] = rows
    return out
