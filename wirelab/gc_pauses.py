"""How long a process stood still in the cyclic garbage collector during a run.

A full pass over a load generator's heap (all of Locust, gevent, grpcio) takes 20-35 ms on
the 2-core bench VM, and it stalls every user of the process at once; were one to land in a
run, its latency would be charged to the server. The harness installs this while users run
and reports the passes, so a result can show that none did (in the bench's runs, none did:
the full passes happen while the modules are imported, before any user starts).
"""

from __future__ import annotations

import gc
import time

__all__ = ["GcPauses"]


class GcPauses:
    """Count and time the collector's passes per generation while installed (gc.callbacks)."""

    def __init__(self) -> None:
        self._started = 0.0
        self.passes: dict[int, list[float]] = {}

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        record = self.passes.setdefault(info["generation"], [0, 0.0])
        record[0] += 1
        record[1] = max(record[1], (time.perf_counter() - self._started) * 1000)

    def install(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, dict[str, float]]:
        """``{"gen2": {"passes": 1, "max_ms": 0.8}, ...}``: only generations that ran."""
        return {
            f"gen{generation}": {"passes": int(count), "max_ms": round(longest, 3)}
            for generation, (count, longest) in sorted(self.passes.items())
        }
