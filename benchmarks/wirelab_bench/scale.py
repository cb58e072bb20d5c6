"""Scale: N idle WebSocket connections held by wirelab and by Tsung 1.7, on the same target.

One WebSocket target (publishing nothing, heartbeats slower than the run) takes, one after
the other in the same run, N idle connections from wirelab's Locust users (``IdleWs``: the
feed-only WebSocket user, every check on) and N from Tsung (a ``ts_websocket`` session: the
handshake, then a long think time). Each side is also run with 10 connections, so that the
interpreter or the Erlang VM and their libraries are not charged to the connections:

- memory per connection: (client RSS at N − client RSS at 10) / (N − 10), the RSS the median
  of the samples taken while the target held the most connections;
- CPU per connect: (client CPU at N − client CPU at 10) / (N − 10), read when the last
  connection is up, before the idle hold and any teardown.

The client is the process that holds the sockets: the harness running the Locust users, and
Tsung's Erlang VM (``beam.smp``; ``use_controller_vm`` puts its users in the controller's VM).
Connections are counted at the target (its descriptors above those it had before), so both
tools are judged by what the server saw. The ratios wirelab / Tsung are the finding.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import psutil

from wirelab.processes import ManagedProcess, free_port

from .lab import HOST, Generator, Target, pinned, url_option
from .locustfiles import IDLE

__all__ = ["measure_scale", "tsung_config"]

BASELINE_CLIENTS = 10


def ramp_room(count: int, rate: float) -> float:
    """Seconds a client has beyond ``count / rate`` to have every connection up: a single
    process connects slower than asked at scale (wirelab's connected 13,040 of 18,000 in
    the 23 s of 18,000 at 1,000/s plus a 5 s hold)."""
    return max(5.0, 2 * count / rate)


#: Seconds the target may take to close the last phase's sockets before the next begins.
SETTLE_S = 30.0
SAMPLE_S = 0.5


def tsung_config(port: int, users: int, arrival_rate: float, *, path: str = "/ws") -> str:
    """Tsung's XML for ``users`` idle WebSocket sessions arriving at ``arrival_rate``/s."""
    # maxnumber ends the arrivals; the phase must outlast them with room, since Tsung's
    # launchers start late (a 1 s phase at 400/s started 2 users of 200) and fall behind
    # the rate when the target accepts slower (15,086 of 18,000 in a 28 s phase at 1,000/s).
    duration = int(ramp_room(users, arrival_rate) + users / arrival_rate) + 10
    return f"""<?xml version="1.0"?>
<!DOCTYPE tsung SYSTEM "/usr/share/tsung/tsung-1.0.dtd" []>
<tsung loglevel="error" version="1.0">
  <clients>
    <client host="localhost" use_controller_vm="true" maxusers="{users + 1}"/>
  </clients>
  <servers>
    <server host="{HOST}" port="{port}" type="tcp"/>
  </servers>
  <load>
    <arrivalphase phase="1" duration="{duration}" unit="second">
      <users maxnumber="{users}" arrivalrate="{arrival_rate:g}" unit="second"/>
    </arrivalphase>
  </load>
  <sessions>
    <session name="idle" probability="100" type="ts_websocket">
      <request><websocket type="connect" path={quoteattr(path)}></websocket></request>
      <thinktime value="86400"/>
    </session>
  </sessions>
</tsung>
"""


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class _Watch:
    """Samples the target's connection count and the client's RSS and CPU every 0.5 s."""

    def __init__(self, server: psutil.Process, base_fds: int) -> None:
        self.server = server
        self.base_fds = base_fds
        self.samples: list[dict[str, float]] = []

    def connections(self) -> int:
        return self.server.num_fds() - self.base_fds

    def run(self, client: Callable[[], psutil.Process | None], done: threading.Event) -> None:
        while not done.wait(SAMPLE_S):
            process = client()
            if process is None:
                continue
            try:
                self.samples.append(
                    {
                        "connections": self.connections(),
                        "rss_kb": process.memory_info().rss // 1024,
                        "cpu_s": _cpu_s(process),
                    }
                )
            except psutil.NoSuchProcess:
                return

    def held(self) -> dict[str, float]:
        """The median RSS of the samples with the most connections, and the CPU at the
        first of them: when the last connection was up (the idle hold after it, and any
        teardown, are not the connects' cost)."""
        if not self.samples:
            return {"connections": -1, "rss_kb": 0, "cpu_s": 0.0}
        most = max(sample["connections"] for sample in self.samples)
        held = [sample for sample in self.samples if sample["connections"] == most]
        return {
            "connections": int(most),
            "rss_kb": int(statistics.median(sample["rss_kb"] for sample in held)),
            "cpu_s": round(held[0]["cpu_s"], 3),
        }


def _settled(target: Target, base_fds: int) -> int:
    """Wait until the target holds no client of a previous phase; its descriptors then."""
    server = psutil.Process(target.pid)
    deadline = time.monotonic() + SETTLE_S
    while server.num_fds() > base_fds and time.monotonic() < deadline:
        time.sleep(0.2)
    return server.num_fds()


def _hold_wirelab(
    workdir: Path, target: Target, count: int, rate: float, hold: float, base_fds: int
) -> dict[str, float]:
    watch = _Watch(psutil.Process(target.pid), _settled(target, base_fds))
    generator = Generator(
        workdir,
        f"scale-wirelab-{count}",
        IDLE,
        users=count,
        # The harness runs for a fixed time: room for a ramp slower than asked.
        duration=count / rate + ramp_room(count, rate) + hold,
        classes=["IdleWs"],
        spawn_rate=rate,
        args=[url_option("ws"), target.url],
    ).start()
    client = psutil.Process(generator.pid)
    done = threading.Event()
    sampler = threading.Thread(target=watch.run, args=(lambda: client, done), daemon=True)
    sampler.start()
    try:
        generator.result(timeout=count / rate + ramp_room(count, rate) + hold + 120)
    finally:
        done.set()
        sampler.join()
    return watch.held()


def _beam(tsung: ManagedProcess) -> psutil.Process | None:
    """Tsung's Erlang VM, a child of the ``tsung`` script."""
    try:
        for child in psutil.Process(tsung.pid).children(recursive=True):
            if child.name() == "beam.smp":
                return child
    except psutil.NoSuchProcess:
        return None
    return None


def _epmd(workdir: Path) -> tuple[ManagedProcess, int]:
    """Erlang's port mapper in the foreground on a free port: a Tsung VM started with
    ``ERL_EPMD_PORT`` registers there instead of starting a daemon that outlives the run."""
    port = free_port()
    epmd = ManagedProcess(
        ["epmd", "-port", str(port)], name="epmd", log_path=workdir / "epmd.log"
    ).start()
    epmd.wait_ready(lambda: _listening(port), timeout=10)
    return epmd, port


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) == 0


def _hold_tsung(
    workdir: Path, target: Target, count: int, rate: float, hold: float, base_fds: int
) -> dict[str, float]:
    epmd, epmd_port = _epmd(workdir)
    try:
        return _hold_tsung_on(workdir, target, count, rate, hold, base_fds, epmd_port)
    finally:
        epmd.stop(grace=2)


def _hold_tsung_on(
    workdir: Path,
    target: Target,
    count: int,
    rate: float,
    hold: float,
    base_fds: int,
    epmd_port: int,
) -> dict[str, float]:
    watch = _Watch(psutil.Process(target.pid), _settled(target, base_fds))
    run_dir = workdir / f"tsung-{count}"
    (run_dir / "log").mkdir(parents=True, exist_ok=True)
    config = run_dir / "config.xml"
    config.write_text(tsung_config(target.port, count, rate))
    tsung = ManagedProcess(
        pinned(["tsung", "-f", str(config), "-l", str(run_dir / "log"), "start"], "generator"),
        name=f"tsung-{count}",
        env={**os.environ, "ERL_EPMD_PORT": str(epmd_port)},
        log_path=run_dir / "tsung.out",
    ).start()
    done = threading.Event()
    beam: list[psutil.Process] = []

    def client() -> psutil.Process | None:
        if not beam:
            found = _beam(tsung)
            if found is None:
                return None
            beam.append(found)
        return beam[0]

    sampler = threading.Thread(target=watch.run, args=(client, done), daemon=True)
    sampler.start()
    try:
        # Tsung runs until stopped (its users think for a day): wait for the ramp, then hold.
        deadline = time.monotonic() + count / rate + ramp_room(count, rate)
        while watch.connections() < count and time.monotonic() < deadline:
            if not tsung.alive:
                raise RuntimeError(f"tsung exited early:\n{tsung.log_tail()}")
            time.sleep(SAMPLE_S)
        time.sleep(hold)
    finally:
        done.set()
        sampler.join()
        tsung.stop(grace=5)
    return watch.held()


def _per_connection(at_n: dict[str, float], base: dict[str, float]) -> dict[str, Any]:
    extra = max(at_n["connections"] - base["connections"], 1)
    return {
        "held": at_n["connections"],
        "rss_mb": round(at_n["rss_kb"] / 1024, 1),
        "kb_per_conn": round((at_n["rss_kb"] - base["rss_kb"]) / extra, 2),
        "cpu_ms_per_connect": round((at_n["cpu_s"] - base["cpu_s"]) * 1000 / extra, 4),
    }


def measure_scale(
    workdir: Path,
    *,
    connections: int,
    spawn_rate: float,
    hold: float,
    log: Any = print,
) -> dict[str, Any]:
    """One repetition: wirelab, then Tsung, each at 10 and at ``connections`` on one target."""
    with Target(workdir, "ws", "--rate", "0", "--heartbeat", "120s") as target:
        base_fds = psutil.Process(target.pid).num_fds()
        out: dict[str, Any] = {"connections": connections, "spawn_rate": spawn_rate}
        for tool, hold_on in (("wirelab", _hold_wirelab), ("tsung", _hold_tsung)):
            base = hold_on(workdir, target, BASELINE_CLIENTS, spawn_rate, 2.0, base_fds)
            at_n = hold_on(workdir, target, connections, spawn_rate, hold, base_fds)
            out[tool] = _per_connection(at_n, base)
            row = out[tool]
            log(
                f"  scale {tool:<7} {connections:>6}: held {row['held']}, "
                f"{row['kb_per_conn']} KiB/conn, {row['cpu_ms_per_connect']} ms CPU/connect"
            )
    wirelab, tsung = out["wirelab"], out["tsung"]
    out["wirelab_over_tsung"] = {
        key: round(wirelab[key] / tsung[key], 3) if tsung[key] > 0 else None
        for key in ("kb_per_conn", "cpu_ms_per_connect")
    }
    ratios = out["wirelab_over_tsung"]
    log(
        f"  scale wirelab/tsung: memory per connection x{ratios['kb_per_conn']}, "
        f"CPU per connect x{ratios['cpu_ms_per_connect']}"
    )
    return out
