"""What every target service shares: settings, health, and the drain sequence."""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass

from .feed.base import Feed, Subscription

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

    def reconnect_hint_ms(self) -> int:
        """A jittered reconnect delay for a client that is being sent away."""
        return self.retry_ms + random.randint(0, max(0, self.retry_jitter_ms))


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
        self.settings = settings
        self.port = 0
        self.started = False
        self.draining = False
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
