"""The in-process feed: the log is the replica's own ring, for a single replica."""

from __future__ import annotations

from .base import Feed, Page
from .event import Event, Reset, now_us


class MemoryFeed(Feed):
    """A feed whose log lives in this process; retention is the last ``retention`` events.

    Enough for one replica. Clients that reconnect to another replica, or to this one after
    a restart, cannot resume from it: they get a :class:`Reset` instead of a silent gap.
    """

    def __init__(self, *, retention: int = 10_000) -> None:
        super().__init__(cache_size=retention)

    async def append(self, data: str) -> Event:
        event = Event(self.head + 1, now_us(), data)
        self._deliver(event)
        return event

    async def _read_log(self, since: int, limit: int) -> Page:
        # Only reached when the ring cannot answer: ``since`` is older than retention,
        # or newer than anything this feed ever published (it restarted).
        ring = self._ring
        if not ring or since >= self.head:
            return Page(since=since, reset=Reset(since, self.head + 1), head=self.head)
        first = ring[0].seq
        events = [ring[i] for i in range(min(limit, len(ring)))]
        return Page(since=since, events=events, reset=Reset(since, first), head=self.head)
