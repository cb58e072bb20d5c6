"""The publisher: appends events to a feed at a steady rate."""

from __future__ import annotations

import asyncio
import logging
import time

from .base import Feed
from .event import make_payload

log = logging.getLogger(__name__)


class Publisher:
    """Appends ``rate`` events per second of ``payload_size`` characters to ``feed``.

    Runs on every replica; only the one holding the feed's publisher lease appends, so
    replicas can come and go (a rolling deploy) without the feed stopping or forking.
    Rate is kept by schedule, not by sleeping a fixed interval after each append: a slow
    append is caught up on the next tick instead of lowering the rate.
    """

    def __init__(self, feed: Feed, *, rate: float = 10.0, payload_size: int = 64) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.feed = feed
        self.rate = rate
        self.payload_size = payload_size
        self.published = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        if self.rate > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="publisher")

    async def stop(self) -> None:
        task = self._task
        if task is not None:
            self._stopping = True
            task.cancel()
            # redis-py may swallow a cancellation that lands inside a command; the loop
            # also watches the flag, so the wait is bounded either way.
            await asyncio.wait({task}, timeout=3.0)
            self._task = None

    async def _run(self) -> None:
        interval = 1.0 / self.rate
        # Ticks of at least 5 ms: high rates publish small batches instead of busy-waiting.
        tick = max(interval, 0.005)
        lease_checked = 0.0
        leader = False
        started = time.monotonic()
        due = 0
        while not self._stopping:
            now = time.monotonic()
            if now - lease_checked >= 1.0:
                was_leader = leader
                leader = await self.feed.claim_publisher()
                lease_checked = now
                if leader and not was_leader:
                    # A new leader starts on schedule from now, not with a backlog.
                    started, due = now, 0
            if leader:
                target = int((now - started) * self.rate) + 1
                while due < target:
                    seq = self.feed.next_seq
                    event = await self.feed.append(make_payload(self.payload_size, seq))
                    if event is None:
                        leader = False
                        break
                    due += 1
                    self.published += 1
            await asyncio.sleep(tick)
