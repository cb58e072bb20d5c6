"""The bench's shallow-idle hold (``wirelab_bench.idle``).

On the real PM QoS device, with only what every Linux machine of this kind has: the device
(CI runs as root), which reads back the request in force, and this process's open files,
whose closing is what drops a request. Whether CPUs halt at all is the host's business (a VM
without an idle driver has no idle states), so idle-state counting is tested on a written
sysfs tree, and the fallbacks on paths that cannot be opened.
"""

from __future__ import annotations

import os
from pathlib import Path

from wirelab_bench.idle import (
    QOS_DEVICE,
    deep_idle_entries,
    held_latency_us,
    idle_states,
    shallow_idle,
)


def _open_on(device: Path) -> list[str]:
    """This process's file descriptors open on ``device``."""
    fds = Path("/proc/self/fd")
    found = []
    for fd in fds.iterdir():
        try:
            if Path(os.readlink(fd)) == device:
                found.append(fd.name)
        except OSError:  # the descriptor iterdir itself used, closed meanwhile
            continue
    return found


def test_the_real_device_holds_a_zero_latency_request_and_drops_it_when_done() -> None:
    assert held_latency_us() is not None, f"{QOS_DEVICE} reads back the request in force"
    assert _open_on(QOS_DEVICE) == []
    with shallow_idle(True) as info:
        assert info["mode"] == "poll", info["reason"]
        # The kernel took it: the lowest request of all is ours, 0 µs (whoever else holds one).
        assert info["held_latency_us"] == 0
        assert held_latency_us() == 0
        assert len(_open_on(QOS_DEVICE)) == 1
    # The kernel keeps a request exactly as long as its file is open.
    assert _open_on(QOS_DEVICE) == []
    assert "deep_idle_entries" in info


def test_writes_a_zero_microsecond_request_and_closes(tmp_path: Path) -> None:
    device = tmp_path / "qos"
    device.write_bytes(b"\xff" * 4)
    with shallow_idle(True, device=device, cpus=tmp_path / "no-cpus") as info:
        assert info["mode"] == "poll"
        assert info["held_latency_us"] == 0
        assert len(_open_on(device)) == 1
    assert device.read_bytes() == b"\x00\x00\x00\x00"
    assert _open_on(device) == []
    # No idle states on this "machine": nothing to count, which is not the same as none.
    assert info["deep_idle_entries"] is None
    assert (info["driver"], info["states"]) == (None, [])


def test_falls_back_to_the_default_idle_and_says_why(tmp_path: Path) -> None:
    with shallow_idle(True, device=tmp_path / "missing") as info:
        assert info["mode"] == "default"
        assert "cannot open" in info["reason"]
    with shallow_idle(False, device=QOS_DEVICE) as info:
        assert info["mode"] == "default"
        assert info["requested"] is False
    assert held_latency_us(tmp_path / "missing") is None


def _state(cpus: Path, cpu: int, index: int, name: str, latency: int, usage: int) -> None:
    state = cpus / f"cpu{cpu}" / "cpuidle" / f"state{index}"
    state.mkdir(parents=True)
    (state / "name").write_text(f"{name}\n")
    (state / "latency").write_text(f"{latency}\n")
    (state / "usage").write_text(f"{usage}\n")


def test_idle_states_and_halting_entries_are_read_from_sysfs(tmp_path: Path) -> None:
    cpus = tmp_path / "cpu"
    (cpus / "cpuidle").mkdir(parents=True)
    (cpus / "cpuidle" / "current_driver").write_text("intel_idle\n")
    for cpu in (0, 1):
        _state(cpus, cpu, 0, "POLL", 0, 1000)  # polling: not a halt, not counted
        _state(cpus, cpu, 2, "C1E", 10, 7)
        _state(cpus, cpu, 10, "C6", 170, 3 + cpu)
    # Numeric order: state10 after state2.
    assert idle_states(0, cpus=cpus) == {
        "driver": "intel_idle",
        "states": [
            {"name": "POLL", "exit_latency_us": 0},
            {"name": "C1E", "exit_latency_us": 10},
            {"name": "C6", "exit_latency_us": 170},
        ],
    }
    assert deep_idle_entries(cpus) == (7 + 3) + (7 + 4)
    device = tmp_path / "qos"
    device.write_bytes(b"\xff" * 4)
    with shallow_idle(True, device=device, cpus=cpus) as info:
        (cpus / "cpu1" / "cpuidle" / "state10" / "usage").write_text("9\n")  # 5 more halts
    assert info["deep_idle_entries"] == 5
