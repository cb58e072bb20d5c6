"""What a run needs of the machine, planned before anything starts.

A connection costs one file descriptor at each end. What else a process holds is small and
bounded, measured here with ``ls /proc/PID/fd`` on running processes:

- a Locust worker: 20-75 descriptors besides its users' sockets (the interpreter, gevent's
  hub, ZeroMQ's context and its socket to the master, grpc's event engine, logs); each user
  holds one socket: an SSE stream, a WebSocket, a gRPC channel, a REST keep-alive
  connection. A gRPC user of the replicated lab balances over every address slot and holds
  one connection to each;
- a target process: 25-60 besides its clients (listeners, the admin port, uvloop's own
  descriptors, grpc's pollers, the Redis pool of the shared feed), and each accepted client
  one more; a connection refused at ``--max-connections`` still holds one until its refusal
  is written.

From these figures :func:`target_max_connections` and :func:`target_processes` size the
lab's targets, and :mod:`wirelab.preflight` checks a run against this machine's limits
(:mod:`wirelab.limits`) before a single user spawns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = [
    "CLIENT_PROCESS_FDS",
    "GRPC_STREAMS_PER_CHANNEL",
    "GRPC_STREAMS_PER_CHANNEL_ENV",
    "REFUSAL_HEADROOM",
    "TARGET_PROCESS_FDS",
    "target_max_connections",
    "target_process_plan",
    "target_processes",
]

#: gRPC users a worker puts on one shared channel (one HTTP/2 connection) unless told
#: otherwise (RFC 9113 5.1.2: a server should allow at least 100 concurrent streams).
GRPC_STREAMS_PER_CHANNEL = 100
#: The variable (and ``--grpc-streams-per-channel``, its Locust option) that sets it.
GRPC_STREAMS_PER_CHANNEL_ENV = "WIRELAB_GRPC_STREAMS_PER_CHANNEL"
#: Descriptors a Locust process keeps besides its users' connections (measured 20-75).
CLIENT_PROCESS_FDS = 128
#: Descriptors a target process keeps besides its clients (measured 25-60, and a Redis pool
#: of at most 16 connections).
TARGET_PROCESS_FDS = 128
#: Share of a target's file limit kept for connections that arrive beyond its
#: ``--max-connections``: each is accepted, answered "try later" and closed, and a storm
#: brings them by the thousand.
REFUSAL_HEADROOM = 0.05


def target_max_connections(open_files: int) -> int:
    """The connections one target process holds before it refuses new ones cleanly (HTTP 503
    + Retry-After, WebSocket close 1013, gRPC RESOURCE_EXHAUSTED), with a file limit of
    ``open_files``: what is left after its own descriptors and the refusals' headroom."""
    return max(1, open_files - TARGET_PROCESS_FDS - math.ceil(open_files * REFUSAL_HEADROOM))


def target_processes(connections: int, open_files: int) -> int:
    """Processes one protocol's target needs for ``connections`` clients: enough that none
    reaches its ``--max-connections`` (at least 1)."""
    return max(1, math.ceil(connections / target_max_connections(open_files)))


def target_process_plan(
    connections: Mapping[str, int],
    protocols: Sequence[str],
    open_files: int,
    *,
    separate: bool = False,
    spare: Mapping[str, int] | None = None,
) -> list[tuple[str, ...]]:
    """The protocols each of the lab's target processes serves, one tuple per process.

    All in one process while their ``connections`` together fit one file limit (the lab as
    it always was) and ``separate`` is false; otherwise each protocol gets
    :func:`target_processes` processes of its own, which share its port (``SO_REUSEPORT``)
    and one feed. ``separate``: a scenario acts on the processes of one protocol, and the
    others must not go down with them. ``spare``: processes per protocol beyond what its
    connections need, so that when a scenario kills that many, the clients they held fit
    into the rest instead of being refused at ``--max-connections``.
    """
    spare = spare or {}
    total = sum(connections.get(protocol, 0) for protocol in protocols)
    if not separate and not any(spare.values()) and total <= target_max_connections(open_files):
        return [tuple(protocols)]
    return [
        (protocol,)
        for protocol in protocols
        for _ in range(
            target_processes(connections.get(protocol, 0), open_files) + spare.get(protocol, 0)
        )
    ]
