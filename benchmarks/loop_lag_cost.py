"""What the loop-lag timer costs, and what an idle generator's loop lag reads on this machine.

Two costs, because a wake-up costs very different amounts in the two states a worker is in:

* busy: the loop never sleeps (a worker with users), so a wake-up is only the timer, the
  greenlet switch and the recording. Measured with the monitor at a 1 µs period in an
  otherwise idle loop (it then never blocks): CPU per wake-up, and at the real period,
  % of one core;
* idle: the process sleeps between wake-ups, and each one also pays the kernel's cost of
  waking a sleeping process. Measured per ``--periods`` value as CPU above an idle loop's
  (run alternately, so the host's drift hits both alike).

And, per period, the idle loop's lag p50/p99/max, its own (loop lag) and the machine's
(host lag): the first is the noise floor that the 20 ms generator bound must stand clear of,
the second what a loaded machine adds.

    .venv/bin/python benchmarks/loop_lag_cost.py --seconds 10 --periods 1,5,10,50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import gevent

from wirelab.metrics.looplag import LoopLagMonitor

RESULTS = Path(__file__).with_name("results") / "loop_lag_cost.json"


def _cpu_during(seconds: float, monitor: LoopLagMonitor | None) -> float:
    if monitor is not None:
        monitor.start()
    cpu = time.process_time()
    gevent.sleep(seconds)
    cpu = time.process_time() - cpu
    if monitor is not None:
        monitor.stop()
    return cpu


class _CountingMonitor(LoopLagMonitor):
    """Counts wake-ups; records without the stall correction (the 1 µs grid is artificial)."""

    wakeups = 0

    def record(self, lag_us: float, ran_us: float, period_us: float) -> None:
        self.wakeups += 1
        super().record(lag_us, ran_us, float("inf"))


def busy_wakeup_us(seconds: float, rounds: int) -> float:
    """CPU per wake-up when the loop never sleeps (the lowest of ``rounds``)."""
    costs = []
    for _ in range(rounds):
        monitor = _CountingMonitor(1e-6)
        cpu = _cpu_during(seconds, monitor)
        costs.append(cpu / max(1, monitor.wakeups) * 1e6)
    return min(costs)


def measure(seconds: float, periods_ms: list[float], rounds: int) -> dict:
    rows = {}
    idle_cpu = []
    for period_ms in periods_ms:
        rows[period_ms] = {"cpu": [], "samples": 0, "lag": None, "host": None}
    for _ in range(rounds):
        idle_cpu.append(_cpu_during(seconds, None))
        for period_ms in periods_ms:
            monitor = LoopLagMonitor(period_ms / 1000)
            rows[period_ms]["cpu"].append(_cpu_during(seconds, monitor))
            lag = monitor.take()
            row = rows[period_ms]
            row["samples"] += lag.loop.count
            for key, histogram in (("lag", lag.loop), ("host", lag.host)):
                if row[key] is None:
                    row[key] = histogram
                else:
                    row[key].merge(histogram)
    idle = min(idle_cpu) / seconds
    busy_us = busy_wakeup_us(min(seconds, 2.0), rounds)
    out = {
        "idle_cpu_percent": round(idle * 100, 4),
        "busy_cpu_us_per_wakeup": round(busy_us, 2),
        "periods": [],
    }
    for period_ms, row in rows.items():
        cpu = min(row["cpu"]) / seconds
        wakeups_per_s = 1000 / period_ms
        lag, host = row["lag"], row["host"]
        quantiles = lag.quantiles([0.5, 0.99])
        host_quantiles = host.quantiles([0.5, 0.99])
        out["periods"].append(
            {
                "period_ms": period_ms,
                "busy_cpu_percent_of_core": round(busy_us * wakeups_per_s / 1e4, 4),
                "idle_cpu_percent_of_core": round((cpu - idle) * 100, 4),
                "idle_cpu_us_per_wakeup": round((cpu - idle) / wakeups_per_s * 1e6, 2),
                "lag_p50_ms": round(quantiles[0.5] / 1000, 3),
                "lag_p99_ms": round(quantiles[0.99] / 1000, 3),
                "lag_max_ms": round(lag.max / 1000, 3),
                "host_lag_p50_ms": round(host_quantiles[0.5] / 1000, 3),
                "host_lag_p99_ms": round(host_quantiles[0.99] / 1000, 3),
                "host_lag_max_ms": round(host.max / 1000, 3),
                "samples": row["samples"],
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--periods", default="1,5,10,50", help="timer periods in ms")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (min CPU kept)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    periods = [float(value) for value in args.periods.split(",")]
    load_before = os.getloadavg()
    result = measure(args.seconds, periods, args.rounds)
    result["seconds"] = args.seconds
    result["rounds"] = args.rounds
    result["host"] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_before": [round(value, 2) for value in load_before],
        "loadavg_after": [round(value, 2) for value in os.getloadavg()],
    }
    print(f"idle loop without the monitor: {result['idle_cpu_percent']:.3f}% of a core")
    print(f"busy loop: {result['busy_cpu_us_per_wakeup']:.2f} us of CPU per wake-up")
    print(
        f"{'period':>8}{'busy %':>9}{'idle %':>9}{'us/wake':>9}{'lag p50':>9}{'lag p99':>9}"
        f"{'lag max':>9}{'host p99':>9}{'host max':>9}   (idle loop; % of one core; ms)"
    )
    for row in result["periods"]:
        print(
            f"{row['period_ms']:>6g}ms{row['busy_cpu_percent_of_core']:>9.3f}"
            f"{row['idle_cpu_percent_of_core']:>9.3f}{row['idle_cpu_us_per_wakeup']:>9.1f}"
            f"{row['lag_p50_ms']:>9.3f}{row['lag_p99_ms']:>9.3f}{row['lag_max_ms']:>9.3f}"
            f"{row['host_lag_p99_ms']:>9.3f}{row['host_lag_max_ms']:>9.3f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
