"""The feed's wake-up: every stream woken, a slice per loop turn, so I/O runs in between.

A callback scheduled when the feed moves stands for the loop's next poll of the sockets
(an accept, a handshake read): it must run after the first slice of streams, not after all
of them. Measured on real sockets in ``benchmarks/accept_rate.py``.
"""

from __future__ import annotations

import asyncio

from wirelab.targets.feed.memory import MemoryFeed
from wirelab.targets.feed.wakeup import Wakeup

WAITERS = 2000


async def woken_before_the_next_turn(slice_size: int) -> tuple[int, int]:
    """(streams woken when a callback scheduled at the wake-up runs, streams woken in all)."""
    wakeup = Wakeup(slice_size)
    woken = 0

    async def stream() -> None:
        nonlocal woken
        assert await wakeup.wait()
        woken += 1

    tasks = [asyncio.create_task(stream()) for _ in range(WAITERS)]
    await asyncio.sleep(0)  # every stream is waiting
    seen: list[int] = []
    wakeup.fire()
    asyncio.get_running_loop().call_soon(lambda: seen.append(woken))
    await asyncio.gather(*tasks)
    return seen[0], woken


def test_streams_are_woken_a_slice_per_loop_turn_with_other_work_in_between() -> None:
    at_next_turn, total = asyncio.run(woken_before_the_next_turn(500))
    assert total == WAITERS
    assert 0 < at_next_turn < WAITERS, at_next_turn


def test_a_slice_of_zero_wakes_every_stream_before_anything_else_runs() -> None:
    at_next_turn, total = asyncio.run(woken_before_the_next_turn(0))
    assert at_next_turn == total == WAITERS


def test_a_wait_returns_false_on_timeout_and_true_once_fired_even_when_late() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        wakeup = Wakeup()
        timed_out = await wakeup.wait(0.01)
        waiter = asyncio.create_task(wakeup.wait(5))
        await asyncio.sleep(0)
        wakeup.fire()
        return timed_out, await waiter, await wakeup.wait(0)

    assert asyncio.run(scenario()) == (False, True, True)


def test_streams_timing_out_on_an_idle_feed_are_forgotten_not_piled_up() -> None:
    """SSE streams wait with a heartbeat timeout; a feed with no events must not keep one
    dead waiter per stream per heartbeat."""

    async def scenario() -> int:
        feed = MemoryFeed()
        subscriptions = [feed.subscribe(None) for _ in range(200)]
        for _ in range(20):  # twenty heartbeats with nothing published
            batches = await asyncio.gather(
                *(sub.next_batch(timeout=0.001) for sub in subscriptions)
            )
            assert all(batch == [] for batch in batches)
        return len(feed._changed._waiters)

    assert asyncio.run(scenario()) <= 200
