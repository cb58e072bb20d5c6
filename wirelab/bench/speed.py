"""How fast this machine's cores run Python, right now.

A virtual machine's core is shared with whoever else runs on the host: on the 2-core bench
VM a 2-million-iteration pure-Python loop took anywhere from 100 to 190 ms of CPU time from
one second to the next, on an otherwise idle machine, in phases from seconds to minutes
long. Every CPU-bound figure of the bench (CPU per operation, closed-loop throughput,
millisecond latencies) moves with it, so the bench probes each core before every part and
records what it found: two runs whose figures differ can be told apart from two runs on a
machine that ran at different speeds.

The probe runs a fixed unit of interpreter work in one child process per core (pinned),
timed in that process's CPU seconds, so waiting for the scheduler is not counted.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

__all__ = ["probe", "summarize_probes"]

#: Child program: ``units`` timings (ms of CPU) of the same loop on ``core``.
_PROGRAM = """
import json, os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
timings = []
for _ in range(int(sys.argv[2])):
    started = time.process_time()
    total = 0
    for i in range(200_000):
        total += i * i % 7
    timings.append((time.process_time() - started) * 1000)
    time.sleep(0.02)
print(json.dumps(timings))
"""


def probe(units: int = 10, cores: list[int] | None = None) -> dict[str, Any]:
    """Time ``units`` units of work on every core at once; ms of CPU per unit, per core."""
    cores = sorted(os.sched_getaffinity(0)) if cores is None else cores
    children = {
        core: subprocess.Popen(
            [sys.executable, "-c", _PROGRAM, str(core), str(units)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for core in cores
    }
    found: dict[str, Any] = {}
    for core, child in children.items():
        out, _ = child.communicate(timeout=120)
        timings = json.loads(out) if child.returncode == 0 else []
        found[str(core)] = {
            "median_ms": round(statistics.median(timings), 1) if timings else None,
            "min_ms": round(min(timings), 1) if timings else None,
            "max_ms": round(max(timings), 1) if timings else None,
        }
    return found


def summarize_probes(probes: list[dict[str, Any]]) -> dict[str, Any]:
    """Over every probe of a run: the median unit time, the fastest and slowest unit, and
    slowest / fastest (how much the machine's speed moved while the bench ran)."""
    medians = [c["median_ms"] for p in probes for c in p.values() if c.get("median_ms")]
    lows = [c["min_ms"] for p in probes for c in p.values() if c.get("min_ms")]
    highs = [c["max_ms"] for p in probes for c in p.values() if c.get("max_ms")]
    if not medians:
        return {"probes": 0}
    return {
        "probes": len(probes),
        "median_ms": round(statistics.median(medians), 1),
        "fastest_ms": min(lows),
        "slowest_ms": max(highs),
        "slowest_over_fastest": round(max(highs) / min(lows), 2),
    }
