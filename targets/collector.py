"""The cyclic garbage collector of a target process, tuned for many long-lived connections.

A target holding thousands of streams keeps a large heap of long-lived objects: one
WebSocket session is about 100 tracked objects (its connection, protocol, three tasks,
their coroutines and futures), so 12,000 of them are 1.2 million. Python's defaults
(collect the young generation every 700 allocations) promote whatever is in flight at that
instant, and fan-out keeps thousands of objects in flight for as long as it runs; promoted,
they soon make up a quarter of the old generation, which triggers a full pass over the whole
heap. Measured on this 2-core machine with 12,000 WebSocket streams and a feed of 2 events/s
for a minute (``benchmarks/accept_rate.py``'s probe, one process): 22-74 full passes, each
stalling the process for 1.5-5.6 s at the longest, during which nothing is accepted or
answered; with the young generation collected every 20,000 allocations (and the middle one
every ten of those, as before), no full pass at all and the longest pause 0.34 s.

Objects alive since start-up (modules, classes, the process's own structures) are frozen
out of every pass. Garbage in reference cycles is still collected, by the younger passes
and, as the heap really grows, by full ones.
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "collector_stats", "tune_collector"]

#: Allocations between young-generation passes, and young passes between middle ones, and
#: middle passes before a full one is considered (Python's defaults: 700, 10, 10).
GC_THRESHOLDS = (20_000, 10, 10)


def tune_collector() -> None:
    """Set :data:`GC_THRESHOLDS` and freeze the start-up heap (call once, before serving)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def collector_stats() -> dict[str, object]:
    """The thresholds, the objects frozen out of every pass, and the passes per generation
    so far: a full pass (``collections[2]``) in the middle of a storm is a stalled process."""
    return {
        "thresholds": list(gc.get_threshold()),
        "frozen": gc.get_freeze_count(),
        "collections": [generation["collections"] for generation in gc.get_stats()],
    }
