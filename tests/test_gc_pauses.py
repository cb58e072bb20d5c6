"""wirelab.gc_pauses: the collector's passes, counted and timed while installed."""

from __future__ import annotations

import gc

from wirelab.gc_pauses import GcPauses


def test_passes_are_counted_per_generation_only_while_installed():
    pauses = GcPauses().install()
    try:
        gc.collect()
        gc.collect(0)
    finally:
        pauses.remove()
    gc.collect()  # after remove(): not counted
    summary = pauses.summary()
    assert summary["gen2"]["passes"] == 1
    assert summary["gen0"]["passes"] >= 1
    assert summary["gen2"]["max_ms"] >= 0.0
    assert pauses._callback not in gc.callbacks
