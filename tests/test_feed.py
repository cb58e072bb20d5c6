"""The event feed: replay then live, resets instead of silent gaps, and Redis-shared replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from wirelab.targets.feed import Event, MemoryFeed, Reset
from wirelab.targets.feed.publisher import Publisher
from wirelab.targets.feed.redis_streams import RedisFeed


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), timeout=30))


async def _collect(subscription, count: int, timeout: float = 5.0) -> list[Event | Reset]:
    received: list[Event | Reset] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(received) < count and loop.time() < deadline:
        received.extend(await subscription.next_batch(timeout=deadline - loop.time()))
    return received


def test_memory_subscriber_gets_replay_then_live_events_in_order() -> None:
    async def scenario() -> None:
        feed = MemoryFeed(retention=100)
        for index in range(5):
            await feed.append(f"e{index}")
        subscription = feed.subscribe(since=2)
        first = await subscription.next_batch()
        assert [event.seq for event in first] == [3, 4, 5]
        waiter = asyncio.ensure_future(subscription.next_batch())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await feed.append("live")
        live = await asyncio.wait_for(waiter, 1)
        assert [(event.seq, event.data) for event in live] == [(6, "live")]

    run(scenario)


def test_memory_resume_past_retention_yields_reset_then_oldest_kept_event() -> None:
    async def scenario() -> None:
        feed = MemoryFeed(retention=10)
        for index in range(30):
            await feed.append(str(index))
        batch = await feed.subscribe(since=3).next_batch()
        reset = batch[0]
        assert isinstance(reset, Reset)
        assert (reset.since, reset.first, reset.lost) == (3, 21, 17)
        assert [event.seq for event in batch[1:]] == list(range(21, 31))

    run(scenario)


def test_memory_resume_from_the_future_is_a_reset_not_a_hang() -> None:
    """A client that saw seq 500 of a feed that restarted must learn the feed went back."""

    async def scenario() -> None:
        feed = MemoryFeed()
        await feed.append("a")
        batch = await feed.subscribe(since=500).next_batch(timeout=1)
        assert batch == [Reset(500, 2)]

    run(scenario)


def test_live_only_subscription_starts_at_head_and_times_out_empty() -> None:
    async def scenario() -> None:
        feed = MemoryFeed()
        await feed.append("old")
        subscription = feed.subscribe(since=None)
        assert await subscription.next_batch(timeout=0.05) == []
        await feed.append("new")
        assert [event.data for event in await subscription.next_batch(timeout=1)] == ["new"]

    run(scenario)


def test_closing_a_subscription_wakes_its_waiter() -> None:
    async def scenario() -> None:
        feed = MemoryFeed()
        subscription = feed.subscribe(since=0)
        waiter = asyncio.ensure_future(subscription.next_batch())
        await asyncio.sleep(0.01)
        subscription.close()
        assert await asyncio.wait_for(waiter, 1) == []

    run(scenario)


def test_publisher_keeps_its_rate_and_numbers_events_contiguously() -> None:
    async def scenario() -> None:
        feed = MemoryFeed()
        publisher = Publisher(feed, rate=200, payload_size=32)
        publisher.start()
        await asyncio.sleep(0.5)
        await publisher.stop()
        page = await feed.read(0, 1000)
        seqs = [event.seq for event in page.events]
        assert seqs == list(range(1, len(seqs) + 1))
        # 0.5 s at 200/s is 100 events; allow for scheduling on a busy CI machine.
        assert 60 <= len(seqs) <= 110
        assert all(len(event.data) == 32 for event in page.events)

    run(scenario)


def test_redis_replicas_share_one_feed_and_resume_across_each_other(redis_url: str) -> None:
    async def scenario() -> None:
        replica_a = RedisFeed(redis_url, key="t:feed")
        replica_b = RedisFeed(redis_url, key="t:feed")
        await replica_a.start()
        await replica_b.start()
        publishers = [Publisher(feed, rate=100, payload_size=16) for feed in (replica_a, replica_b)]
        try:
            for publisher in publishers:
                publisher.start()
            on_a = await _collect(replica_a.subscribe(since=0), 30)
            seqs_a = [event.seq for event in on_a if isinstance(event, Event)]
            assert seqs_a[:30] == list(range(1, 31))
            resumed = await _collect(replica_b.subscribe(since=30), 30)
            seqs_b = [event.seq for event in resumed if isinstance(event, Event)]
            assert seqs_b[:30] == list(range(31, 61))
            # A subscriber can read an event before its publisher has handled the append's
            # reply; stopping then would cancel that append uncounted. Let the counts catch
            # up first (bounded: 2 s).
            for _ in range(200):
                if sum(publisher.published for publisher in publishers) >= 60:
                    break
                await asyncio.sleep(0.01)
        finally:
            for publisher in publishers:
                await publisher.stop()
            await replica_a.close()
            await replica_b.close()
        # Only one replica held the lease at a time: nothing was published twice.
        assert publishers[0].published + publishers[1].published >= 60
        assert min(publishers[0].published, publishers[1].published) == 0

    run(scenario)


def test_redis_stream_rejects_a_second_publisher_of_the_same_seq(redis_url: str) -> None:
    async def scenario() -> None:
        replica_a = RedisFeed(redis_url, key="t:fence")
        replica_b = RedisFeed(redis_url, key="t:fence")
        await replica_a.start()
        await replica_b.start()
        try:
            assert (await replica_a.append("from a")).seq == 1
            # B has not seen A's event: its append of seq 1 must be refused, not forked.
            assert await replica_b.append("from b") is None
            page = await replica_a.read(0)
            assert [(event.seq, event.data) for event in page.events] == [(1, "from a")]
        finally:
            await replica_a.close()
            await replica_b.close()

    run(scenario)


def test_redis_resume_past_retention_is_an_explicit_reset(redis_url: str) -> None:
    async def scenario() -> None:
        feed = RedisFeed(redis_url, key="t:trim", retention=10, cache_size=5)
        await feed.start()
        try:
            for index in range(300):
                await feed.append(str(index))
            # MAXLEN ~ trims whole nodes, so the oldest kept seq is only known roughly.
            page = await feed.read(since=1)
            assert page.reset is not None
            assert page.reset.since == 1
            assert page.reset.first == page.events[0].seq > 2
            assert page.reset.lost == page.reset.first - 2
        finally:
            await feed.close()

    run(scenario)


def test_skip_seq_test_hook_leaves_a_hole_clients_can_see() -> None:
    async def scenario() -> None:
        feed = MemoryFeed()
        feed.skip_seqs = frozenset({3, 4})
        for index in range(6):
            await feed.append(str(index))
        subscription = feed.subscribe(since=0)
        seqs = [event.seq for event in await subscription.next_batch(timeout=1)]
        assert seqs == [1, 2, 5, 6]
        feed.skip_seqs = frozenset({7})
        await feed.append("7")
        assert await subscription.next_batch(timeout=0.1) == []
        assert subscription.cursor == 7

    run(scenario)
