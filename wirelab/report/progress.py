"""The live progress block of a headless run, read from the master's own time series.

The master writes ``timeseries.lp`` once per interval; following that file keeps the
progress display out of the master's process and shows exactly what the sinks receive.
Quiet when stdout is not a terminal (CI logs get the final summary only).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

from ..metrics.lineprotocol import parse_line
from ..metrics.results import TIMESERIES_FILE


class Progress:
    """Refreshes one block in place: elapsed/total, users, rps, failures, p99 per protocol."""

    def __init__(self, run_dir: Path, total_s: float, *, enabled: bool = True) -> None:
        self.path = run_dir / TIMESERIES_FILE
        self.total_s = total_s
        self.enabled = enabled and sys.stdout.isatty()
        self.started = time.monotonic()
        self._offset = 0
        self._lines_drawn = 0
        self._last_draw = 0.0
        self.users = 0
        self.rps: dict[str, float] = {}
        self.failures: dict[str, int] = defaultdict(int)
        self.p99: dict[str, float] = {}

    def _read_new_points(self) -> None:
        try:
            with self.path.open(encoding="utf-8") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        complete, _, _ = chunk.rpartition("\n")
        if not complete:
            return
        self._offset += len(complete.encode()) + 1
        interval_rps: dict[str, float] = defaultdict(float)
        for line in complete.splitlines():
            if not line.strip():
                continue
            try:
                point = parse_line(line)
            except ValueError:
                continue
            if point.measurement == "users":
                self.users = int(point.fields.get("users", 0))
            elif point.measurement == "requests":
                protocol = point.tags.get("protocol", "?")
                interval_rps[protocol] += float(point.fields.get("count", 0))
                self.failures[protocol] += int(point.fields.get("failures", 0))
                if "p99" in point.fields:
                    self.p99[protocol] = max(
                        self.p99.get(protocol, 0.0), float(point.fields["p99"])
                    )
        if interval_rps:
            self.rps = dict(interval_rps)

    def tick(self) -> None:
        if not self.enabled or time.monotonic() - self._last_draw < 1.0:
            return
        self._last_draw = time.monotonic()
        self._read_new_points()
        elapsed = time.monotonic() - self.started
        lines = [
            f"  {min(elapsed, self.total_s):5.0f}s / {self.total_s:.0f}s   users {self.users}   "
            f"rps {sum(self.rps.values()):,.0f}   failures {sum(self.failures.values())}"
        ]
        for protocol in sorted(set(self.rps) | set(self.p99)):
            lines.append(
                f"    {protocol:<6} rps {self.rps.get(protocol, 0):>8,.0f}   "
                f"fail {self.failures.get(protocol, 0):>6}   "
                f"p99 {self.p99.get(protocol, 0):>8.1f} ms"
            )
        # Move up over the previous block and redraw it: one block, refreshed in place.
        if self._lines_drawn:
            sys.stdout.write(f"\x1b[{self._lines_drawn}F\x1b[J")
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        self._lines_drawn = len(lines)

    def finish(self) -> None:
        if self.enabled:
            self._last_draw = 0.0
            self.tick()
