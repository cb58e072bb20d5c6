"""What a run needs: workers, cores and memory for N connections at E events/s, or R requests/s.

Capacity planning from measured per-core figures. A Locust worker is one process on one
event loop, so it uses at most one core; a worker above 85% of its core is generator-bound
(:mod:`wirelab.metrics.generator`), so the plan keeps every worker at or below
:data:`TARGET_CPU` of its core and at or below the connections its file limit allows. Each
figure below was measured on the project's 2-core development VM (AMD EPYC, Python 3.11) and
names the benchmark file that recorded it: on other machines read the plan as the order of
magnitude and confirm it with a short run whose generator verdict is clean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .capacity import CLIENT_PROCESS_FDS, GRPC_STREAMS_PER_CHANNEL

__all__ = [
    "BASE_RSS_MIB",
    "FIGURES",
    "TARGET_CPU",
    "ClientFigures",
    "SizingError",
    "WorkerPlan",
    "plan_connections",
    "plan_requests",
]

#: The share of its core a planned worker may use: room under the generator verdict's 85%
#: bound for ramps, reconnects and the host's noise.
TARGET_CPU = 0.70
#: Resident memory of a Locust worker with wirelab's users imported and nothing connected.
BASE_RSS_MIB = 80.0
#: The file limit a worker pod usually gets (containerd's and Docker's default nofile).
CLUSTER_OPEN_FILES = 1_048_576


class SizingError(ValueError):
    """The request cannot be planned: one line for the user."""


@dataclass(frozen=True, slots=True)
class ClientFigures:
    """What one protocol's client costs a worker, and where the figure was measured."""

    #: Worker CPU per delivered event, ms.
    cpu_ms_per_event: float
    #: Worker memory per idle connection (a gRPC stream), KiB.
    kib_per_connection: float
    source: str


#: Measured by ``benchmarks/client_cost.py --clients 2000`` (2,000 connections, process CPU
#: time, median of three; ``benchmarks/results/client-cost.json``).
FIGURES: dict[str, ClientFigures] = {
    "sse": ClientFigures(0.0176, 9.9, "benchmarks/results/client-cost.json"),
    "ws": ClientFigures(0.0132, 11.2, "benchmarks/results/client-cost.json"),
    "grpc": ClientFigures(0.112, 34.7, "benchmarks/results/client-cost.json"),
}
#: Request/response per worker core, closed loop above capacity (wirelab-bench's scaling
#: part, "Cluster model" in docs/results.md: 8,016 req/s per core).
REQUESTS_PER_CORE = 8_016.0
REQUESTS_SOURCE = "benchmarks/results/quiet-host/run1/bench.json (cluster model)"


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """Workers, cores and memory for one run, and why that many."""

    workers: int
    cores: int
    memory_mib: float
    connections_per_worker: int
    cpu_per_worker: float
    #: What set the worker count: ``cpu`` or ``file limit``.
    bound_by: str
    sources: tuple[str, ...]
    requests_per_worker: float = 0.0

    def lines(self) -> list[str]:
        """The plan for a terminal: the numbers, then what they come from."""
        lines = [
            f"workers: {self.workers} (one core each: {self.cores} cores), "
            f"memory: {self.memory_mib:,.0f} MiB in all",
            f"per worker: {self._load()}, {self.cpu_per_worker:.0%} of a core (set by the "
            f"{self.bound_by}; a worker above 85% is generator-bound)",
        ]
        lines += [f"measured: {source}" for source in self.sources]
        return lines

    def _load(self) -> str:
        if self.requests_per_worker:
            return f"{self.requests_per_worker:,.0f} requests/s"
        return f"{self.connections_per_worker:,} connections"


def _workers(cpu_cores: float, connections: int, open_files: int) -> tuple[int, str]:
    by_cpu = math.ceil(cpu_cores / TARGET_CPU) if cpu_cores > 0 else 1
    room = open_files - CLIENT_PROCESS_FDS
    if room <= 0:
        raise SizingError(f"a file limit of {open_files} leaves no room for connections")
    by_files = math.ceil(connections / room) if connections else 1
    return (by_cpu, "cpu") if by_cpu >= by_files else (by_files, "file limit")


def plan_connections(
    connections: int,
    events_per_s: float,
    *,
    protocol: str = "ws",
    open_files: int = CLUSTER_OPEN_FILES,
) -> WorkerPlan:
    """Workers for ``connections`` stream clients of ``protocol`` each receiving
    ``events_per_s`` (a fan-out of ``connections * events_per_s`` deliveries a second)."""
    if protocol not in FIGURES:
        raise SizingError(f"unknown protocol {protocol!r}: choose from {', '.join(FIGURES)}")
    if connections < 1:
        raise SizingError(f"connections must be at least 1, got {connections}")
    if events_per_s < 0:
        raise SizingError(f"events per second must be 0 or more, got {events_per_s:g}")
    figures = FIGURES[protocol]
    cpu_cores = connections * events_per_s * figures.cpu_ms_per_event / 1000
    # gRPC users share channels: a worker holds one connection per GRPC_STREAMS_PER_CHANNEL.
    sockets = (
        math.ceil(connections / GRPC_STREAMS_PER_CHANNEL) if protocol == "grpc" else connections
    )
    workers, bound_by = _workers(cpu_cores, sockets, open_files)
    memory = workers * BASE_RSS_MIB + connections * figures.kib_per_connection / 1024
    return WorkerPlan(
        workers=workers,
        cores=workers,
        memory_mib=memory,
        connections_per_worker=math.ceil(connections / workers),
        cpu_per_worker=cpu_cores / workers,
        bound_by=bound_by,
        sources=(figures.source,),
    )


def plan_requests(requests_per_s: float) -> WorkerPlan:
    """Workers for ``requests_per_s`` request/response operations a second."""
    if requests_per_s <= 0:
        raise SizingError(f"requests per second must be more than 0, got {requests_per_s:g}")
    cpu_cores = requests_per_s / REQUESTS_PER_CORE
    workers, bound_by = _workers(cpu_cores, 0, CLUSTER_OPEN_FILES)
    return WorkerPlan(
        workers=workers,
        cores=workers,
        memory_mib=workers * BASE_RSS_MIB,
        connections_per_worker=0,
        cpu_per_worker=cpu_cores / workers,
        bound_by=bound_by,
        sources=(REQUESTS_SOURCE,),
        requests_per_worker=requests_per_s / workers,
    )
