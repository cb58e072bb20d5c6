"""What every feed backend shares: the local cache, live fan-out and resumable subscriptions.

A target replica holds one :class:`Feed`. Every protocol handler on that replica reads it
the same way: ``read(since)`` for a page (REST polling, replay) and ``subscribe(since)``
for a stream (SSE, WebSocket, gRPC). Backends differ only in where the authoritative log
lives (this process, or a Redis stream shared by all replicas).

Fan-out is a shared ring plus one wake-up signal, not a queue per subscriber: a new event
costs O(1) to publish however many clients are connected, and a subscriber is just a
cursor. A subscriber that falls behind the ring reads from the log instead, so a slow
client costs no memory; past the log's retention it gets an explicit :class:`Reset`. The
signal wakes subscribers a slice per loop turn (:mod:`.wakeup`), so fan-out to many
streams never keeps the replica from accepting and answering new connections.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field

from .event import Event, Reset
from .wakeup import WAKE_SLICE, Wakeup

#: Largest page one read returns; larger replays take several reads.
MAX_PAGE = 1000


@dataclass(slots=True)
class Page:
    """The answer to "what came after ``since``?".

    ``reset`` is set when ``since`` is no longer in the log (fell out of retention, or
    the feed restarted behind it); ``events`` then starts at ``reset.first``.
    """

    since: int
    events: list[Event] = field(default_factory=list)
    reset: Reset | None = None
    head: int = 0

    @property
    def cursor(self) -> int:
        """The ``since`` to use for the next read."""
        if self.events:
            return self.events[-1].seq
        if self.reset is not None:
            return self.reset.first - 1
        return self.since


class Feed(ABC):
    """A replica's view of the event feed. Subclasses own the authoritative log."""

    def __init__(self, *, cache_size: int = 10_000, wake_slice: int = WAKE_SLICE) -> None:
        self._ring: deque[Event] = deque(maxlen=cache_size)
        self._changed = Wakeup(wake_slice)
        #: Latest seq known on this replica (0 before the first event).
        self.head = 0
        #: TEST HOOK: seqs this replica never hands to clients, as a buggy server would.
        #: The log stays whole; only what clients receive has a hole. Tests and the gap
        #: detection demo use it (``--test-skip-seq``); it is empty in normal runs.
        self.skip_seqs: frozenset[int] = frozenset()

    @property
    def wake_slice(self) -> int:
        """Subscribers woken per loop turn when the feed moves (0: all in one turn)."""
        return self._changed.slice_size

    @wake_slice.setter
    def wake_slice(self, size: int) -> None:
        self._changed.slice_size = size

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the log and begin following it."""

    async def close(self) -> None:
        """Stop following the log and release connections."""

    # -- the log, per backend --------------------------------------------------------

    @abstractmethod
    async def append(self, data: str) -> Event | None:
        """Publish one event; ``None`` when this replica may not publish right now."""

    @abstractmethod
    async def _read_log(self, since: int, limit: int) -> Page:
        """Read the authoritative log after ``since`` (used when the cache cannot answer)."""

    @property
    def next_seq(self) -> int:
        """The seq the next :meth:`append` from this replica will get."""
        return self.head + 1

    async def claim_publisher(self) -> bool:
        """Whether this replica should publish now (one publisher per feed)."""
        return True

    # -- shared by every backend -----------------------------------------------------

    def _deliver(self, event: Event) -> None:
        """Record an event that is now in the log and wake every waiting subscriber."""
        ring = self._ring
        if ring and event.seq != ring[-1].seq + 1:
            # The cache only ever holds a contiguous run; after a jump, start afresh.
            ring.clear()
        ring.append(event)
        self.head = event.seq
        self.notify()

    def notify(self) -> None:
        """Wake every waiter so it re-checks the head and its own state."""
        changed, self._changed = self._changed, Wakeup(self._changed.slice_size)
        changed.fire()

    async def wait_beyond(self, seq: int, timeout: float | None = None) -> bool:
        """Wait until the feed's head passes ``seq``; ``False`` on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self.head <= seq:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            await self._changed.wait(remaining)
        return True

    async def read(self, since: int, limit: int = MAX_PAGE) -> Page:
        """Events after ``since`` (at most ``limit``), or a reset if ``since`` is gone."""
        page = await self._read(since, limit)
        if self.skip_seqs and page.events:
            kept = [event for event in page.events if event.seq not in self.skip_seqs]
            if kept:
                page.events = kept
            else:
                # Everything skipped: return the last one's position as an empty page so
                # the client's cursor still moves past the hole.
                page = Page(since=page.events[-1].seq, head=page.head)
        return page

    async def _read(self, since: int, limit: int) -> Page:
        limit = max(1, min(limit, MAX_PAGE))
        ring = self._ring
        if since == self.head:
            return Page(since=since, head=self.head)
        if ring and ring[0].seq <= since + 1 and since < self.head:
            start = since + 1 - ring[0].seq
            end = min(len(ring), start + limit)
            events = [ring[i] for i in range(start, end)]
            return Page(since=since, events=events, head=self.head)
        return await self._read_log(since, limit)

    def subscribe(self, since: int | None) -> Subscription:
        """A cursor over the feed: replay after ``since`` then live; ``None`` means live only."""
        return Subscription(self, self.head if since is None else since)


class Subscription:
    """One client's position in the feed. Replays, then follows live, never skipping silently."""

    __slots__ = ("closed", "cursor", "feed")

    def __init__(self, feed: Feed, since: int) -> None:
        self.feed = feed
        #: The last seq handed to the client (or the client's ``since``).
        self.cursor = since
        self.closed = False

    def close(self) -> None:
        """End the subscription: a pending :meth:`next_batch` returns at once, empty."""
        self.closed = True
        self.feed.notify()

    async def next_batch(
        self, limit: int = 256, timeout: float | None = None
    ) -> list[Event | Reset]:
        """Wait for what follows the cursor and return it, in order.

        Returns an empty list when ``timeout`` passes first (time for a heartbeat) or when
        the subscription is closed (the server is draining). The cursor moves only when a
        batch is returned, so cancelling this call loses nothing.
        """
        feed = self.feed
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while not self.closed:
            if feed.head != self.cursor:
                page = await feed.read(self.cursor, limit)
                batch: list[Event | Reset] = []
                if page.reset is not None:
                    batch.append(page.reset)
                batch.extend(page.events)
                # No await between here and the return: a cancellation cannot land between
                # moving the cursor and handing the batch over.
                self.cursor = page.cursor
                if batch:
                    return batch
            if deadline is None:
                await feed._changed.wait()
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or not await feed._changed.wait(remaining):
                return []
        return []
