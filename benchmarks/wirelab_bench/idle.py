"""Keep the CPUs out of deep idle states while the bench measures.

A loopback request/response at 1,000 req/s leaves both cores idle most of the time, so
nearly every message wakes a sleeping CPU. On a virtual machine that wake-up is a halted
vCPU the hypervisor has to schedule again, and how long that takes depends on what the
*host* is doing. On the 2-core VM the results were recorded on, alternating in one session:
a 32-byte TCP ping-pong between two processes measured 24–37 µs p50 with the CPUs allowed
to halt and 17–18 µs with them polling; ``wirelab-bench --quick --only request``, twice
each way, gave REST keep-alive p50 0.40–0.50 ms and server CPU per request 0.096–0.125 ms
halting, 0.24–0.25 ms and 0.075–0.080 ms polling (WebSocket 0.30–0.35 against 0.14–0.18 ms
p50). Woken from a halt, the process also pays for the wake-up in its own CPU seconds.

``wirelab-bench --idle poll`` does what ``tuned``'s latency profiles and cyclictest do: it
asks the kernel's PM QoS interface for a CPU wake-up latency of 0 µs
(``/dev/cpu_dma_latency``) for as long as it runs, so the idle loop polls instead of
halting. Time spent polling is still idle time in ``/proc/stat`` and is charged to no
process, so every CPU figure keeps its meaning (what the process itself ran); the figures are
lower because no process pays for a wake-up any more, as none would on a machine busy enough
not to idle. The request is dropped when the file is closed, i.e. when the bench ends or
dies. Opening the file needs root; without it the bench says so and runs as it would have.
The device is the kernel's PM QoS interface, there with or without idle states; reading it
gives the request in force (the lowest of all held), which the bench records as evidence.
How often CPUs still entered a halting idle state meanwhile is recorded too, where the
machine has cpuidle states to count (a VM without an idle driver has none).

It is not the default because it did not make runs more reproducible here. Two full runs
with it (summarised in ``benchmarks/README.md``; recorded at commit 41c1b35) against the
two three-repetition runs then committed without it (the same evening): REST keep-alive
p50 0.26 / 0.27 ms against 0.36 / 0.43, WebSocket 0.18 / 0.23 against 0.29 / 0.34, server
CPU per REST request 0.057 / 0.063 ms against 0.097 / 0.108; but the spread between a
run's repetitions grew (REST keep-alive p50 17% and 51% against 8% and 14%) and 65 of 88
headline figures were within ±15% between the two runs against 74. Halting was
not what made runs drift: the host's speed for Python work did (plain Locust's requests per
CPU-second moved 5.3k–8.5k between the three repetitions of one polling run). Why polling
widened the spread was not established; a vCPU that never halts leaves its host less room,
which a busy host may answer by descheduling it at random moments.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["CPUS", "QOS_DEVICE", "deep_idle_entries", "held_latency_us", "idle_states",
           "shallow_idle"]  # fmt: skip

QOS_DEVICE = Path("/dev/cpu_dma_latency")
#: Where the kernel lists the CPUs and, with an idle driver, each one's idle states.
CPUS = Path("/sys/devices/system/cpu")
#: The kernel's PM QoS value: a native 32-bit integer, in µs.
_QOS_VALUE = struct.Struct("=i")


def idle_states(cpu: int = 0, cpus: Path = CPUS) -> dict[str, Any]:
    """The cpuidle driver and the idle states of ``cpu`` (name and exit latency in µs);
    ``driver`` None and no states on a machine without an idle driver."""
    states = []
    for state in sorted((cpus / f"cpu{cpu}" / "cpuidle").glob("state*"), key=_state_number):
        try:
            name = (state / "name").read_text().strip()
            latency = int((state / "latency").read_text())
        except (OSError, ValueError):
            continue
        states.append({"name": name, "exit_latency_us": latency})
    try:
        driver = (cpus / "cpuidle" / "current_driver").read_text().strip() or None
    except OSError:
        driver = None
    return {"driver": driver, "states": states}


def _state_number(state: Path) -> int:
    return int(state.name.removeprefix("state"))


def deep_idle_entries(cpus: Path = CPUS) -> int | None:
    """How many times any CPU has entered an idle state with a non-zero exit latency, or
    None when the machine has no idle states to count them in."""
    states = list(cpus.glob("cpu[0-9]*/cpuidle/state*"))
    if not states:
        return None
    total = 0
    for state in states:
        try:
            if int((state / "latency").read_text()) > 0:
                total += int((state / "usage").read_text())
        except (OSError, ValueError):
            continue
    return total


def held_latency_us(device: Path = QOS_DEVICE) -> int | None:
    """The wake-up latency request in force, read back from ``device`` (the lowest of every
    open request; the default when none is held), or None when it cannot be read."""
    try:
        with device.open("rb") as handle:
            return _QOS_VALUE.unpack(handle.read(_QOS_VALUE.size))[0]
    except (OSError, struct.error):
        return None


def _request_no_wakeup_latency(device: Path) -> tuple[int | None, str]:
    """Open ``device`` and write a 0 µs request: the open file descriptor, or why not."""
    try:
        fd = os.open(device, os.O_WRONLY)
    except OSError as exc:
        return None, f"cannot open {device}: {exc.strerror}"
    try:
        # The kernel keeps the request while the file is open and drops it when it closes.
        os.write(fd, _QOS_VALUE.pack(0))
    except OSError as exc:
        os.close(fd)
        return None, f"cannot write {device}: {exc.strerror}"
    return fd, f"0 µs wake-up latency held on {device}"


@contextlib.contextmanager
def shallow_idle(
    enabled: bool = True, device: Path = QOS_DEVICE, cpus: Path = CPUS
) -> Iterator[dict[str, Any]]:
    """Hold a 0 µs CPU wake-up latency request for the body of the ``with``.

    Yields what was done, for the report: ``mode`` is ``"poll"`` when the request is held,
    ``"default"`` when it was not asked for or could not be made (``reason`` says why). When
    held, ``held_latency_us`` is the request in force read back from the device once it was
    made (0: the kernel took it), and ``deep_idle_entries`` is filled in on the way out: how
    often a CPU still entered a halting idle state meanwhile (near 0 when the kernel
    honoured the request; None on a machine without idle states).
    """
    fd, reason = _request_no_wakeup_latency(device) if enabled else (None, "not requested")
    info: dict[str, Any] = {**idle_states(cpus=cpus), "requested": enabled, "reason": reason}
    if fd is None:
        yield {**info, "mode": "default"}
        return
    held = {**info, "mode": "poll", "held_latency_us": held_latency_us(device)}
    before = deep_idle_entries(cpus)
    try:
        yield held
    finally:
        after = deep_idle_entries(cpus)
        # The evidence that the request took effect: CPUs that still halted while it was held.
        held["deep_idle_entries"] = None if before is None or after is None else after - before
        os.close(fd)
