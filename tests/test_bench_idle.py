"""The bench's shallow-idle hold (``wirelab_bench.idle``), on the real PM QoS device.

CI runs as root on a VM with a cpuidle driver, so the real ``/dev/cpu_dma_latency`` is
opened; the fallbacks are exercised on paths that cannot be opened.
"""

from __future__ import annotations

import time
from pathlib import Path

from wirelab_bench.idle import QOS_DEVICE, deep_idle_entries, idle_states, shallow_idle


def _halts_while_napping(naps: int = 200) -> int:
    """Deep idle entries while this process sleeps 1 ms ``naps`` times: each nap leaves its
    CPU idle, so with halting allowed nearly every one is an entry."""
    before = deep_idle_entries()
    for _ in range(naps):
        time.sleep(0.001)
    return deep_idle_entries() - before


def test_the_real_device_stops_the_cpus_halting_while_held() -> None:
    assert idle_states()["states"], "this machine has cpuidle states"
    unheld = _halts_while_napping()
    with shallow_idle(True) as info:
        assert info["mode"] == "poll", info["reason"]
        time.sleep(0.05)  # a CPU halted before the request stays halted until its next wake-up
        held = _halts_while_napping()
    # 200 naps are 200 halts or more when allowed; holding the request leaves a stray few.
    assert unheld >= 150, unheld
    assert held <= 4, held
    assert info["deep_idle_entries"] <= held + 4
    # Released when the block ends: the CPUs halt again.
    assert _halts_while_napping() >= 150


def test_writes_a_zero_microsecond_request_and_closes(tmp_path: Path) -> None:
    device = tmp_path / "qos"
    device.write_bytes(b"\xff" * 4)
    with shallow_idle(True, device=device) as info:
        assert info["mode"] == "poll"
    assert device.read_bytes() == b"\x00\x00\x00\x00"


def test_falls_back_to_the_default_idle_and_says_why(tmp_path: Path) -> None:
    with shallow_idle(True, device=tmp_path / "missing") as info:
        assert info["mode"] == "default"
        assert "cannot open" in info["reason"]
    with shallow_idle(False, device=QOS_DEVICE) as info:
        assert info["mode"] == "default"
        assert info["requested"] is False
