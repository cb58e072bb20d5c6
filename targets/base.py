"""What every target service shares: settings, health, and the drain sequence."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, replace

from ..capacity import target_max_connections
from ..limits import listen_backlog, open_files_limit
from .feed.base import Feed, Subscription
from .test_hooks import LatencyMix, StallPlan

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TargetSettings:
    """Knobs common to all targets. Each has a reason, given in its comment."""

    host: str = "127.0.0.1"
    port: int = 0
    #: Seconds a stopping process may take in total; after that, connections are cut.
    grace: float = 10.0
    #: Seconds between readiness turning false and the listener closing, so that a load
    #: balancer notices before connections are refused. 0 locally, a few s behind an LB.
    drain_delay: float = 0.0
    #: Idle stream heartbeat (SSE comment, WS ping): shorter than any proxy's idle timeout.
    heartbeat: float = 15.0
    #: Base reconnect delay suggested to stream clients (SSE ``retry:``, WS/gRPC hints).
    retry_ms: int = 1000
    #: Upper bound of the random extra added to the reconnect hint while draining, so the
    #: clients of a stopping replica do not all come back in the same instant.
    retry_jitter_ms: int = 2000
    #: Largest message a client may send (WS frame, gRPC message, REST body).
    max_message_bytes: int = 1024 * 1024
    #: Shared secret clients must present (header, WS subprotocol/first frame, gRPC
    #: metadata). ``None`` disables auth, which is the local default.
    token: str | None = None
    #: gRPC only: seconds after which the server sends a connection GOAWAY (0: never), so
    #: long-lived clients re-balance over replicas that were added after they connected.
    grpc_max_connection_age: float = 0.0
    #: Connections (gRPC: connections, and concurrent calls) one process holds before it
    #: refuses new ones with a clear "try later" (HTTP 503 + Retry-After, WS close 1013,
    #: RESOURCE_EXHAUSTED) instead of running out of file descriptors or memory. 0: derived
    #: from the process's file limit (:func:`wirelab.capacity.target_max_connections`).
    max_connections: int = 0
    #: Accept queue of the protocol listeners. 0: the kernel's most (``net.core.somaxconn``),
    #: so a reconnect storm queues in the kernel instead of being dropped and retried.
    listen_backlog: int = 0
    #: ``SO_REUSEPORT`` on the protocol listeners: several processes serve one port and the
    #: kernel spreads new connections over them (how the lab holds more connections than one
    #: process's file limit allows). Off by default: two targets must never share a port by
    #: accident.
    reuse_port: bool = False
    #: A request's headers must arrive within this (slowloris).
    header_timeout: float = 10.0
    #: A stream whose client leaves the send buffer full this long is cut (slow consumer):
    #: the client resumes from the feed's log, and the server's memory stays bounded.
    send_stall_timeout: float = 10.0
    #: SO_SNDBUF of each client connection (0: the kernel's autotuning, up to tcp_wmem's
    #: max, 4 MiB on Debian). Bounds the kernel memory a client that stops reading can pin
    #: (the kernel doubles the value) and makes the stall visible to the server sooner;
    #: 256 KiB still carries about 20 Mbit/s per client at 100 ms RTT.
    socket_send_buffer: int = 256 * 1024
    #: PEM certificate chain and key: serve HTTPS / WSS / gRPC over TLS (None: plaintext).
    tls_cert: str | None = None
    tls_key: str | None = None
    #: TEST HOOKS on the REST echo (see :mod:`.test_hooks`): a known service-time mix and
    #: periodic stalls, against which the load side's figures are judged. Off by default.
    test_latency: LatencyMix | None = None
    test_stall: StallPlan | None = None
    #: TEST HOOK (WebSocket): every Nth echo is not answered; the connection is sent away
    #: with 1001 instead, as when a request crosses a draining server's close (0: never).
    test_away_every: int = 0

    def for_this_host(self) -> TargetSettings:
        """A copy with the host-derived settings (0) resolved: ``max_connections`` from this
        process's file limit now (the runner raises it first), ``listen_backlog`` from
        ``net.core.somaxconn``. Each protocol of a process may hold ``max_connections``; the
        lab gives protocols processes of their own when together they would not fit one."""
        return replace(
            self,
            max_connections=self.max_connections or target_max_connections(open_files_limit()),
            listen_backlog=self.listen_backlog or listen_backlog(),
        )

    def reconnect_hint_ms(self) -> int:
        """A jittered reconnect delay for a client that is being sent away."""
        return self.retry_ms + random.randint(0, max(0, self.retry_jitter_ms))


#: Width of one accept-log bucket: fine enough to tell a 100 ms storm from a 5 s spread.
ACCEPT_BUCKET_MS = 100
#: Buckets kept (60 s): a poller that misses this much has missed the storm anyway.
ACCEPT_BUCKETS_KEPT = 600


class AcceptLog:
    """New connections (or streams) counted per 100 ms of wall-clock time.

    A per-second counter cannot show the shape of a reconnect storm: a thousand clients
    coming back in 50 ms and the same thousand spread over 5 s both fit in a few seconds.
    The log keeps the last minute of buckets; a poller asks for the finished ones after the
    last it saw (:meth:`finished_after`), so nothing is counted twice or lost between polls.
    """

    __slots__ = ("_buckets", "total")

    def __init__(self) -> None:
        #: ``[bucket index, count]`` in increasing bucket order; index = epoch ms // 100.
        self._buckets: deque[list[int]] = deque(maxlen=ACCEPT_BUCKETS_KEPT)
        self.total = 0

    def record(self, count: int = 1) -> None:
        """Count ``count`` accepts now."""
        bucket = time.time_ns() // (ACCEPT_BUCKET_MS * 1_000_000)
        buckets = self._buckets
        if buckets and buckets[-1][0] == bucket:
            buckets[-1][1] += count
        else:
            buckets.append([bucket, count])
        self.total += count

    def finished_after(self, after: int) -> list[list[int]]:
        """``[bucket, count]`` of the finished buckets after ``after`` (the current one is
        still filling, so it is left for the next poll)."""
        current = time.time_ns() // (ACCEPT_BUCKET_MS * 1_000_000)
        return [[index, count] for index, count in self._buckets if after < index < current]


class Target(ABC):
    """One protocol's server on one port, serving the replica's feed.

    Draining follows the same order everywhere: readiness turns false, the listener stays
    open for ``drain_delay`` (a load balancer is still sending), then new connections are
    refused and each protocol tells its clients to go in its own words, and finally the
    target waits for work in flight until the grace period runs out.
    """

    #: Protocol name as used on the command line: rest, sse, ws, grpc.
    protocol: str = ""

    def __init__(self, feed: Feed, settings: TargetSettings) -> None:
        self.feed = feed
        self.settings = settings.for_this_host()
        self.port = 0
        self.started = False
        self.draining = False
        #: Connections (streams for gRPC) accepted, per 100 ms: the storm's shape.
        self.accepts = AcceptLog()
        #: Times :meth:`drop_connections` cut every client (network-blip storms).
        self.drops = 0
        self._subscriptions: set[Subscription] = set()

    @property
    def ready(self) -> bool:
        """Ready to take new work: started and not draining."""
        return self.started and not self.draining

    @abstractmethod
    async def start(self) -> int:
        """Start listening on the configured host/port; return the bound port."""

    @abstractmethod
    async def stop_accepting(self) -> None:
        """Refuse new connections and tell connected clients to go (protocol-specific)."""

    @abstractmethod
    async def wait_closed(self, timeout: float) -> bool:
        """Wait for in-flight work; force-close what remains after ``timeout``."""

    def mark_draining(self) -> None:
        """Readiness turns false at once; health checks see it on their next probe."""
        self.draining = True

    @abstractmethod
    async def drop_connections(self) -> int:
        """Cut every client connection at once, without a goodbye, and keep serving.

        The network-blip storm: clients see a reset, not a drain, and all come back at
        the same moment unless their reconnect policy spreads them. Returns the number of
        connections (streams, for gRPC) cut.
        """

    def stats(self) -> dict[str, object]:
        """Server-side figures a client cannot see. Every target reports at least
        ``accepted_connections``, ``active_connections``, ``resumes``, ``replayed`` and
        ``requests`` (a count, or a dict of counts per route/method). ``accepted`` is what
        the accept log counts: client connections as the protocol sees them (a REST TCP
        connection, an SSE stream, a WebSocket session, a gRPC stream), without health
        checks where the protocol can tell them apart."""
        return {
            "protocol": self.protocol,
            "accepted": self.accepts.total,
            "ready": self.ready,
            "draining": self.draining,
            "drops": self.drops,
            "feed_head": self.feed.head,
            "max_connections": self.settings.max_connections,
            "listen_backlog": self.settings.listen_backlog,
        }

    def open_subscription(self, since: int | None) -> Subscription:
        """A feed subscription that this target ends when it drains."""
        subscription = self.feed.subscribe(since)
        self._subscriptions.add(subscription)
        return subscription

    def release_subscription(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def end_subscriptions(self) -> None:
        """Wake every stream of this target so that it sends its goodbye and ends."""
        for subscription in list(self._subscriptions):
            subscription.closed = True
        self.feed.notify()


async def drain_targets(targets: list[Target], settings: TargetSettings) -> bool:
    """Run the drain sequence on every target of a process; ``True`` if all finished cleanly."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.grace
    for target in targets:
        target.mark_draining()
    if settings.drain_delay > 0:
        await asyncio.sleep(min(settings.drain_delay, settings.grace))
    for target in targets:
        await target.stop_accepting()
    remaining = max(0.0, deadline - loop.time())
    results = await asyncio.gather(*(target.wait_closed(remaining) for target in targets))
    return all(results)
