"""How late this process's event loop runs what is due: the generator's own delay.

Every measurement a gevent process takes (a latency, a delivery lag, a connect time) ends
when its greenlet next runs. If the loop is busy elsewhere — a user computing, too many
ready greenlets — that moment comes late, and the delay is added to the figure as if the
target had caused it. :class:`LoopLagMonitor` measures that delay directly: a timer
greenlet is due on a fixed grid every :data:`PERIOD_S`, and each time it runs it records
how far behind its due time it woke, in µs, into mergeable
:class:`~wirelab.metrics.histogram.LogHistogram`\\ s.

Whose delay it was. A timer can run late for two reasons: the loop's thread was running
other greenlets (the generator's own work: **loop lag**), or it was ready but the machine
ran other processes on the cores (**host lag**: a busy neighbour, a starved VM). The
thread's own CPU time over the wait tells them apart: the part of the lateness it spent
running is its own, the rest the host's. The generator verdict judges the loop lag — that
is the generator's saturation, and it reads the same on a quiet and on a crowded machine —
and reports the host lag beside it, because it inflates the figures just as much.

A stall of length L is recorded as jHiccup records a hiccup: the sample L, plus one sample
for every grid point the stall swallowed (L−P, L−2P, ... above 0). Without that, a 200 ms
stall would be one sample among a hundred punctual ones and vanish below the p99; with it,
a histogram is the delay a measurement ending at a random moment would suffer, so its p99 is
what the generator adds to the p99 of every figure it records. Each histogram gets one
sample per grid point of the stall, the loop lag's counting down from the process's own
share O of it (O, O−P, ... then zeros) and the host lag's from the rest: a 1.5 s stall in
which the process ran 150 ms weighs in the loop lag as a 150 ms stall of its own would.

Period: 10 ms. Resolution: every stall longer than the period is seen (the timer is due
during it), and a stall at the 20 ms generator bound (:mod:`wirelab.metrics.generator`)
carries at least two samples, so it cannot hide. Cost (``benchmarks/loop_lag_cost.py`` on
the 2-core VM): a wake-up in a busy loop is about 3–5 µs of CPU, 0.03–0.05 % of a core at
100 a second; an otherwise idle process pays the kernel's cost of waking from sleep on top,
about 2 % of a core, which only an idle worker pays. 1 ms (jHiccup's period) would cost ten
times as much to resolve stalls far below anything the verdict cares about; 50 ms would
miss half the stalls at the bound.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import gevent

from .histogram import LogHistogram

__all__ = ["PERIOD_S", "LoopLag", "LoopLagMonitor", "loop_lag"]

#: Seconds between the timer's due times (see the module docstring for the choice).
PERIOD_S = 0.010


@dataclass(slots=True)
class LoopLag:
    """An interval's samples (µs): ``loop`` the process's own lateness, ``host`` the
    machine's."""

    loop: LogHistogram = field(default_factory=LogHistogram)
    host: LogHistogram = field(default_factory=LogHistogram)


class LoopLagMonitor:
    """A timer greenlet that records its own lateness; :meth:`take` hands over the samples.

    Runs only between :meth:`start` and :meth:`stop` (the plugin starts it when users start
    and stops it when they are told to stop), so an idle process spends nothing on it.
    """

    def __init__(self, period_s: float = PERIOD_S) -> None:
        if not period_s > 0:
            raise ValueError("the loop-lag period must be more than 0 seconds")
        self.period_s = period_s
        self._lag = LoopLag()
        self._greenlet: gevent.Greenlet | None = None

    @property
    def running(self) -> bool:
        return self._greenlet is not None and not self._greenlet.dead

    def start(self) -> None:
        """Start measuring (idempotent)."""
        if not self.running:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop measuring; what was recorded stays until :meth:`take`."""
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.kill(block=False)

    def take(self) -> LoopLag:
        """The samples since the last call, and start new histograms."""
        lag, self._lag = self._lag, LoopLag()
        return lag

    def _run(self) -> None:
        period_us = self.period_s * 1e6
        loop = gevent.get_hub().loop
        due = time.monotonic() + self.period_s
        cpu = time.thread_time()
        while True:
            # The loop's cached time may be stale by the work done since it last looked;
            # a timer set from it would fire early and hide part of the next lag.
            loop.update_now()
            gevent.sleep(max(0.0, due - time.monotonic()), ref=False)
            now, cpu_now = time.monotonic(), time.thread_time()
            lag_us = (now - due) * 1e6
            self.record(lag_us, (cpu_now - cpu) * 1e6, period_us)
            cpu = cpu_now
            # The next grid point still ahead: a stall moves the grid on, never bunches it.
            due += self.period_s * (1 + max(0, math.floor(lag_us / period_us)))

    def record(self, lag_us: float, ran_us: float, period_us: float) -> None:
        """One wake-up ``lag_us`` late after the thread ran ``ran_us`` since the last one:
        one sample per grid point of the lateness in each histogram, the process's own share
        (at most what it ran) in the loop lag, the rest in the host lag."""
        loop, host = self._lag.loop, self._lag.host
        own_us = min(max(lag_us, 0.0), max(ran_us, 0.0))
        host_us = max(lag_us, 0.0) - own_us
        loop.record(own_us)
        host.record(host_us)
        swallowed = lag_us - period_us
        while swallowed > 0:
            own_us -= period_us
            host_us -= period_us
            loop.record(max(own_us, 0.0))
            host.record(max(host_us, 0.0))
            swallowed -= period_us


_process_monitor: LoopLagMonitor | None = None


def loop_lag() -> LoopLagMonitor:
    """This process's monitor (one per process, created on first use, not started)."""
    global _process_monitor  # noqa: PLW0603 - one loop, so one monitor per process
    if _process_monitor is None:
        _process_monitor = LoopLagMonitor()
    return _process_monitor
