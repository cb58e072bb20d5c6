"""Is the load generator the bottleneck? The master's record of it, and the verdict.

A generator that is out of CPU, or whose event loop runs late, adds its own delay to every
figure it measures: a loop lag of L adds up to L to every latency, delivery lag and connect
time a process records while it lasts. Each worker reports, every interval, its CPU and the
lateness of a timer greenlet, split into its own loop lag and the host's
(:mod:`wirelab.metrics.looplag`); :class:`GeneratorHealth` keeps them on the master, and
:func:`judge` turns them into the verdict that ``summary.json``, the terminal, the report
and JUnit carry (``summary["generator"]``).

The bounds, and why:

``cpu_percent`` 85 (% of one core)
    A gevent worker is one loop on one core. As its CPU nears a whole core the loop has no
    slack left and ready greenlets queue behind each other (a queue at 85 % utilisation
    already waits several service times on average); a worker at 100 % is measuring itself.
``loop_lag_p99_ms`` 20
    The loop-lag histogram is stall-corrected (the delay a measurement ending at a random
    moment would suffer), so its p99 is what the generator adds to the p99 of every figure
    it records. 20 ms is 10–50× below the latency and lag thresholds of the built-in
    scenarios (200 ms – 1 s) and above the 1–10 ms that loopback figures themselves read, so
    a generator inside it changes no verdict; and it is far above what a worker's own work
    costs its loop when it keeps up (1–2 ms at p99 in the smoke scenario), so only
    saturation trips it.

A worker is **over** in an interval when its CPU or its interval loop-lag p99 is above a
bound. It is **generator-bound** when it "stayed" over, which is any of:

* its loop-lag p99 over the whole run (the merged histogram) is above the bound: more than
  1 % of the run's time its loop was 20 ms late or worse, however the stalls were spread;
* it was over in :data:`CONSECUTIVE` intervals in a row: a sustained phase, such as a ramp
  that saturates it or a reconnect storm, whose figures are its own even if the rest of a
  long run is fine;
* its CPU was above the bound in at least :data:`CPU_SHARE` of its intervals (and in at
  least :data:`CPU_MIN_INTERVALS`): saturation that comes and goes.

Isolated intervals over the loop-lag bound do not count on their own: with a hundred
samples an interval, its p99 is its second-worst wake-up, and one 30 ms burst (a garbage
collection, a batch of events arriving at once) puts an interval over. Three in a row are
a phase; scattered ones count through the run's p99, in proportion to the time they took.
Nothing is ignored, not even the ramp: connect times measured while the generator saturates
spawning users are the generator's, which is how issue 21's 16k run read "PASSED". The
window is from the users' start to the moment they are told to stop (a report is an
interval; the last partial one is left out).

``share_affected`` is the share of that window in which a generator-bound worker was over a
bound: the part of the run whose figures are the generator's (0 when the verdict is clean).

The host lag (the machine not running a ready worker: busy neighbours, a starved VM) is not
the generator's saturation and does not make a run generator-bound — on a shared CI host it
would fail runs for their neighbours' sake — but it inflates the figures just the same, so
the verdict reports it (``host_lag_p99_ms``, a note above the bound) and a threshold can gate
on it (``generator:host_lag_p99<20ms``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .histogram import LogHistogram
from .series import RequestSeries, StreamSeries

__all__ = [
    "BOUNDS",
    "CLEAN",
    "CONSECUTIVE",
    "CPU_MIN_INTERVALS",
    "CPU_SHARE",
    "GENERATOR_BOUND",
    "UNMEASURED",
    "GeneratorHealth",
    "distorted_figures",
    "generator_status",
    "judge",
]

CLEAN = "clean"
GENERATOR_BOUND = "generator-bound"
#: No worker reported its health inside the run's window (e.g. an older run's files).
UNMEASURED = "unmeasured"

#: The verdict's bounds (see the module docstring for the why).
BOUNDS = {"cpu_percent": 85.0, "loop_lag_p99_ms": 20.0}
#: Intervals over a bound in a row that make a worker generator-bound.
CONSECUTIVE = 3
#: Share of a worker's intervals with CPU over the bound that makes it generator-bound...
CPU_SHARE = 0.10
#: ... when they are at least this many.
CPU_MIN_INTERVALS = 2

#: Figures a saturated generator distorts, in the order the verdict names them.
_FIGURES = ("delivery lag", "request latency", "connect times", "reconnect times")


@dataclass(slots=True)
class Interval:
    """One worker report inside the run's window: its span on the master's clock (epoch s),
    the worker's CPU (% of one core) and its loop-lag p99 in the interval (ms; ``None``
    without samples)."""

    start: float
    end: float
    cpu_percent: float
    loop_lag_p99_ms: float | None

    def over(self, bounds: dict[str, float]) -> bool:
        lag = self.loop_lag_p99_ms
        return self.cpu_percent > bounds["cpu_percent"] or (
            lag is not None and lag > bounds["loop_lag_p99_ms"]
        )


@dataclass(slots=True)
class WorkerRecord:
    """One worker's intervals and its loop-lag and host-lag histograms merged over the
    window."""

    intervals: list[Interval] = field(default_factory=list)
    loop_lag: LogHistogram = field(default_factory=LogHistogram)
    host_lag: LogHistogram = field(default_factory=LogHistogram)


class GeneratorHealth:
    """What the master keeps about the generator: per worker, every interval's CPU and loop
    lag, and the loop-lag and host-lag histograms merged exactly (per worker, and for the
    run).

    Fed every worker report's payload by :meth:`add`; reports before :meth:`start` or
    after :meth:`stop` only set where the next interval begins.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.workers: dict[str, WorkerRecord] = {}
        #: Every worker's loop lag, and host lag, merged (µs).
        self.loop_lag = LogHistogram()
        self.host_lag = LogHistogram()
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._last_report: dict[str, float] = {}

    @property
    def running(self) -> bool:
        return self.started_at is not None and self.stopped_at is None

    def start(self, now: float) -> None:
        """Users start: intervals count from ``now`` (idempotent)."""
        if self.started_at is None:
            self.started_at = now

    def stop(self, now: float) -> None:
        """Users are told to stop: later reports no longer count (idempotent)."""
        if self.started_at is not None and self.stopped_at is None:
            self.stopped_at = now

    def add(self, worker: str, payload: dict[str, Any], now: float) -> None:
        """One report's ``health`` sample and ``loop_lag``/``host_lag`` histograms, received
        at ``now``."""
        previous = self._last_report.get(worker)
        self._last_report[worker] = now
        health = payload.get("health")
        if not self.running or not isinstance(health, dict):
            return
        assert self.started_at is not None
        start = max(self.started_at, previous if previous is not None else now - self.interval_s)
        record = self.workers.get(worker)
        if record is None:
            record = self.workers[worker] = WorkerRecord()
        lag_p99 = health.get("loop_lag_p99_ms")
        record.intervals.append(
            Interval(
                start,
                now,
                float(health.get("cpu_percent") or 0.0),
                None if lag_p99 is None else float(lag_p99),
            )
        )
        for key in ("loop_lag", "host_lag"):
            wire = payload.get(key)
            if wire:
                lag = LogHistogram.from_wire(wire)
                getattr(record, key).merge(lag)
                getattr(self, key).merge(lag)

    # -- metrics.json ----------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        """The record as ``metrics.json`` holds it (intervals as parallel lists)."""
        return {
            "interval_s": self.interval_s,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "workers": {
                worker: {
                    "start": [interval.start for interval in record.intervals],
                    "end": [interval.end for interval in record.intervals],
                    "cpu_percent": [interval.cpu_percent for interval in record.intervals],
                    "loop_lag_p99_ms": [interval.loop_lag_p99_ms for interval in record.intervals],
                    "loop_lag": record.loop_lag.to_wire(),
                    "host_lag": record.host_lag.to_wire(),
                }
                for worker, record in self.workers.items()
            },
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> GeneratorHealth:
        health = cls(float(data.get("interval_s", 1.0)))
        health.started_at = data.get("started_at")
        health.stopped_at = data.get("stopped_at")
        for worker, wire in (data.get("workers") or {}).items():
            record = health.workers[worker] = WorkerRecord()
            record.intervals = [
                Interval(float(start), float(end), float(cpu), lag)
                for start, end, cpu, lag in zip(
                    wire["start"], wire["end"], wire["cpu_percent"], wire["loop_lag_p99_ms"],
                    strict=True,
                )
            ]  # fmt: skip
            record.loop_lag = LogHistogram.from_wire(wire["loop_lag"])
            health.loop_lag.merge(record.loop_lag)
            if wire.get("host_lag"):
                record.host_lag = LogHistogram.from_wire(wire["host_lag"])
                health.host_lag.merge(record.host_lag)
        return health


# -- the verdict -------------------------------------------------------------------------


def distorted_figures(
    requests: Iterable[RequestSeries], streams: Iterable[StreamSeries]
) -> list[str]:
    """The kinds of figure this run measured, each of which a saturated generator inflates."""
    found = set()
    for series in requests:
        if series.count:
            found.add("connect times" if series.name.endswith(" connect") else "request latency")
    for series in streams:
        if series.delivered:
            found.add("delivery lag")
        if series.reconnect_time:
            found.add("reconnect times")
    return [figure for figure in _FIGURES if figure in found]


def _ms(value_us: float | None) -> float | None:
    return None if value_us is None else round(value_us / 1000, 3)


def _lag_ms(histogram: LogHistogram) -> tuple[float | None, float | None, float | None]:
    if not histogram:
        return None, None, None
    values = histogram.quantiles([0.5, 0.99])
    return _ms(values[0.5]), _ms(values[0.99]), _ms(histogram.max)


def _figures(cpu: list[float], loop_lag: LogHistogram, host_lag: LogHistogram) -> dict[str, Any]:
    """CPU max/mean (% of one core) and the loop- and host-lag figures (ms)."""
    p50, p99, lag_max = _lag_ms(loop_lag)
    _, host_p99, host_max = _lag_ms(host_lag)
    return {
        "cpu_max": round(max(cpu), 1) if cpu else None,
        "cpu_mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
        "loop_lag_p50_ms": p50,
        "loop_lag_p99_ms": p99,
        "loop_lag_max_ms": lag_max,
        "host_lag_p99_ms": host_p99,
        "host_lag_max_ms": host_max,
    }


def _longest_run(flags: list[bool]) -> int:
    longest = current = 0
    for flag in flags:
        current = current + 1 if flag else 0
        longest = max(longest, current)
    return longest


def _union_length(spans: list[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        begin = max(start, reach)
        if end > begin:
            total += end - begin
        reach = max(reach, end)
    return total


def _judge_worker(
    name: str, record: WorkerRecord, bounds: dict[str, float]
) -> tuple[dict[str, Any], str | None]:
    """One worker's figures, and the line that says why it is bound (``None``: it is not)."""
    intervals = record.intervals
    cpu = [interval.cpu_percent for interval in intervals]
    over = [interval.over(bounds) for interval in intervals]
    cpu_bound, lag_bound = bounds["cpu_percent"], bounds["loop_lag_p99_ms"]
    longest = _longest_run(over)
    count = sum(over)
    row = {
        **_figures(cpu, record.loop_lag, record.host_lag),
        "intervals": len(intervals),
        "intervals_over": count,
        "longest_over": longest,
    }
    cpu_over = sum(value > cpu_bound for value in cpu)
    lag_over = sum(
        interval.loop_lag_p99_ms is not None and interval.loop_lag_p99_ms > lag_bound
        for interval in intervals
    )
    p99, lag_max = row["loop_lag_p99_ms"], row["loop_lag_max_ms"]
    why = []
    if p99 is not None and p99 > lag_bound:
        why.append(f"loop-lag p99 {p99:.0f} ms over the run (bound {lag_bound:g} ms)")
    if longest >= CONSECUTIVE:
        why.append(f"over a bound for {longest} consecutive intervals")
    if cpu_over >= CPU_MIN_INTERVALS and cpu_over >= CPU_SHARE * len(intervals):
        why.append(f"CPU above {cpu_bound:g}% in {cpu_over / len(cpu):.0%} of intervals")
    row["bound"] = bool(why)
    if not why:
        return row, None
    lag_peak = "-" if lag_max is None else f"{lag_max:.0f} ms"
    context = (
        f"CPU max {max(cpu):.0f}%, above {cpu_bound:g}% in {cpu_over} of {len(cpu)} intervals; "
        f"loop-lag p99 above {lag_bound:g} ms in {lag_over} of {len(cpu)} intervals, "
        f"max {lag_peak}"
    )
    return row, f"{name}: {'; '.join(why)} ({context})"


def judge(
    health: GeneratorHealth | None,
    *,
    requests: Iterable[RequestSeries] = (),
    streams: Iterable[StreamSeries] = (),
    bounds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The generator verdict (``summary["generator"]``) from what the master recorded.

    ``requests`` and ``streams`` are the run's series: they say which figures a
    generator-bound run distorts.
    """
    bounds = dict(BOUNDS if bounds is None else bounds)
    workers: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    for name, record in sorted((health.workers if health else {}).items()):
        if record.intervals:
            workers[name], reason = _judge_worker(name, record, bounds)
            if reason:
                reasons.append(reason)
    cpu = [
        interval.cpu_percent
        for record in (health.workers.values() if health else ())
        for interval in record.intervals
    ]
    if health is None or not cpu:
        return {
            "verdict": UNMEASURED,
            "bounds": bounds,
            **_figures([], LogHistogram(), LogHistogram()),
            "share_affected": None,
            "distorts": [],
            "reasons": ["no worker reported its CPU and loop lag while users ran"],
            "notes": [],
            "workers": {},
        }
    bound = any(row["bound"] for row in workers.values())
    figures = _figures(cpu, health.loop_lag, health.host_lag)
    host_p99 = figures["host_lag_p99_ms"]
    notes = []
    if host_p99 is not None and host_p99 > bounds["loop_lag_p99_ms"]:
        notes.append(
            f"the host kept the workers from running when ready: host-lag p99 {host_p99:.0f} ms "
            f"(max {figures['host_lag_max_ms']:.0f} ms), other processes on their cores; the "
            "figures include that delay"
        )
    return {
        "verdict": GENERATOR_BOUND if bound else CLEAN,
        "bounds": bounds,
        **figures,
        "share_affected": round(_share_affected(health, workers, bounds), 4),
        "distorts": distorted_figures(requests, streams) if bound else [],
        "reasons": reasons,
        "notes": notes,
        "workers": workers,
    }


def _share_affected(
    health: GeneratorHealth, workers: dict[str, dict[str, Any]], bounds: dict[str, float]
) -> float:
    """The share of the window's time in which a generator-bound worker was over a bound."""
    spans = [
        (interval.start, interval.end)
        for name, record in health.workers.items()
        if workers.get(name, {}).get("bound")
        for interval in record.intervals
        if interval.over(bounds)
    ]
    every = [
        (interval.start, interval.end)
        for record in health.workers.values()
        for interval in record.intervals
    ]
    window = _union_length(every)
    return min(1.0, _union_length(spans) / window) if window > 0 else 0.0


# -- live, on the master -------------------------------------------------------------------

_live: tuple[GeneratorHealth, Any] | None = None


def watch(health: GeneratorHealth, series: Any) -> None:
    """Make ``health`` the record :func:`generator_status` judges; ``series()`` returns the
    run's ``(requests, streams)`` so far (the plugin calls this when a run begins)."""
    global _live  # noqa: PLW0603 - one run per master process
    _live = (health, series)


def generator_status() -> dict[str, Any]:
    """The verdict from what the master has merged so far (the live form of
    ``summary["generator"]``); ``{}`` in a process that is not merging a run."""
    if _live is None:
        return {}
    health, series = _live
    requests, streams = series()
    return judge(health, requests=requests.values(), streams=streams.values())
