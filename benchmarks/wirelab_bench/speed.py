"""How fast this machine's cores run Python right now, and how much of their time the host took.

A virtual machine's core is shared with whoever else runs on the host: on the 2-core bench
VM a 2-million-iteration pure-Python loop took anywhere from 100 to 190 ms of CPU time from
one second to the next, on an otherwise idle machine, in phases from seconds to minutes
long. Every CPU-bound figure of the bench (CPU per operation, closed-loop throughput,
millisecond latencies) moves with it, so the bench probes each core before every part and
records what it found: two runs whose figures differ can be told apart from two runs on a
machine that ran at different speeds.

The probe runs a fixed unit of interpreter work in one child process per core (pinned),
timed in that process's CPU seconds, so waiting for the scheduler is not counted.

The probe sees a slower core; it does not see a core taken away. A hypervisor that runs
other guests on this VM's physical cores while its vCPUs want to run counts that time as
*steal* in ``/proc/stat``, so the bench reads those counters at every part's start and end.
On the bench VM the host had taken 0.6% of the time its cores wanted to run in the 23 hours
since boot, then 5.8% over the next full bench run (3.8% in its median minute, 41% in its
worst), while the probe's median moved by 3.7% against the run before.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["cpu_ticks", "probe", "steal_summary", "summarize_probes"]

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


#: The aggregate ``cpu`` line of ``/proc/stat``: ticks spent in each state since boot, in
#: this order (``guest`` time is already inside ``user``, so it is not added again).
_STATES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_BUSY = ("user", "nice", "system", "irq", "softirq")


def cpu_ticks(stat: Path = Path("/proc/stat")) -> dict[str, int] | None:
    """All cores' ticks so far: ``busy``, ``idle`` and ``steal`` (None where there is no
    ``/proc/stat`` or its first line is not the aggregate ``cpu`` line)."""
    try:
        first = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu" or len(first) < 1 + len(_STATES):
        return None
    ticks = dict(zip(_STATES, map(int, first[1 : 1 + len(_STATES)]), strict=True))
    return {
        "busy": sum(ticks[state] for state in _BUSY),
        "idle": ticks["idle"] + ticks["iowait"],
        "steal": ticks["steal"],
    }


def _steal_pct(before: dict[str, int], after: dict[str, int]) -> float | None:
    """Steal as a share of the time the cores wanted to run (busy + steal) between two
    readings; None when they did not want to run at all."""
    steal = after["steal"] - before["steal"]
    wanted = after["busy"] - before["busy"] + steal
    return round(100 * steal / wanted, 1) if wanted > 0 else None


def steal_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Over a run's ``{"at": label, "ticks": cpu_ticks()}`` readings, in order: the share of
    the wanted CPU time the host took over the whole run, and the interval (named by the
    label that opened it) where it took the most."""
    readings = [sample for sample in samples if sample.get("ticks")]
    if len(readings) < 2:
        return {"intervals": 0}
    shares = [
        (_steal_pct(before["ticks"], after["ticks"]), before["at"])
        for before, after in itertools.pairwise(readings)
    ]
    shares = [(pct, at) for pct, at in shares if pct is not None]
    overall = _steal_pct(readings[0]["ticks"], readings[-1]["ticks"])
    if overall is None or not shares:
        return {"intervals": 0}
    worst_pct, worst_at = max(shares)
    return {
        "intervals": len(shares),
        "steal_pct": overall,
        "worst_pct": worst_pct,
        "worst_at": worst_at,
    }
