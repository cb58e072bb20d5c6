"""The processes of one measurement: a target, a generator, and what each one cost.

The target is ``wirelab targets serve`` (one protocol per process, so its CPU and memory are
that protocol's); the generator is ``python -m wirelab.users.harness`` running one locustfile
from :mod:`.locustfiles` in a process of its own (Locust monkey-patches everything it touches).
CPU comes from psutil (user + system seconds of the process), so every figure can be put next
to the side that paid for it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from wirelab.probes import target_ready
from wirelab.processes import ManagedProcess, free_port

__all__ = [
    "HOST",
    "Generator",
    "Target",
    "children_cpu",
    "cores",
    "cpu_seconds",
    "cpu_shares",
    "load_average",
    "pinned",
]

HOST = "127.0.0.1"
#: A process using more than this share of one core is called the bottleneck.
SATURATED = 0.85


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 when it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def children_cpu() -> float:
    """CPU seconds of every child this process has reaped (for wrk, h2load, artillery)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def cores(role: str) -> list[int]:
    """The CPUs a ``"server"`` (target, nginx) or a ``"generator"`` runs on.

    With two or more cores the server gets the last one and single-process generators the
    rest, so neither is ever scheduled onto the other's core: unpinned, a target and wrk on
    a 2-core machine share one core in some runs and not in others, and their throughput
    flips between two modes (measured: 29k vs 56k req/s). One core: both get it.
    """
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return available
    return available[-1:] if role == "server" else available[:-1]


def pinned(argv: list[str], role: str) -> list[str]:
    """``argv`` run through ``taskset`` on the ``role``'s cores (see :func:`cores`)."""
    return ["taskset", "-c", ",".join(map(str, cores(role))), *argv]


class Target:
    """One ``wirelab targets serve PROTOCOL`` process on a free port."""

    def __init__(self, workdir: Path, protocol: str, *args: str) -> None:
        self.protocol = protocol
        self.port = free_port()
        argv = [
            sys.executable,
            "-m",
            "wirelab",
            "targets",
            "serve",
            protocol,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *args,
        ]
        log = workdir / f"target-{protocol}-{self.port}.log"
        self.process = ManagedProcess(argv, name=f"{protocol} target", log_path=log)

    def __enter__(self) -> Target:
        self.process.start()
        os.sched_setaffinity(self.process.pid, cores("server"))
        self.process.wait_ready(lambda: target_ready(HOST, self.protocol, self.port), timeout=30)
        return self

    def __exit__(self, *_: object) -> None:
        self.process.stop(grace=5)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        """The address users take (``--rest-url`` & co.)."""
        if self.protocol == "grpc":
            return f"{HOST}:{self.port}"
        scheme = "ws" if self.protocol == "ws" else "http"
        return f"{scheme}://{HOST}:{self.port}"

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kb(self) -> int:
        return psutil.Process(self.pid).memory_info().rss // 1024

    def stats(self) -> dict[str, Any]:
        """``GET /stats`` of an HTTP target."""
        with urllib.request.urlopen(f"http://{HOST}:{self.port}/stats", timeout=5) as response:
            return json.loads(response.read())


def url_option(protocol: str) -> str:
    """The users' option naming a protocol's target."""
    return {"rest": "--rest-url", "sse": "--sse-url", "ws": "--ws-url", "grpc": "--grpc-target"}[
        protocol
    ]


def harness_argv(
    workdir: Path,
    name: str,
    source: str,
    *,
    users: int,
    duration: float,
    args: list[str],
    classes: list[str] | None = None,
    spawn_rate: float = 1000,
) -> list[str]:
    """The users harness's command line for ``source``, written to ``workdir/NAME.py``."""
    locustfile = workdir / f"{name}.py"
    locustfile.write_text(textwrap.dedent(source))
    command = [
        sys.executable, "-m", "wirelab.users.harness", "--locustfile", str(locustfile),
        "--users", str(users), "--spawn-rate", str(spawn_rate), "--duration", str(duration),
    ]  # fmt: skip
    for cls in classes or ():
        command += ["--user-class", cls]
    return [*command, "--", *args]


def harness_env() -> dict[str, str]:
    """This environment without wirelab's and Locust's variables: the arguments say it all."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("WIRELAB_", "LOCUST_"))}


class Generator:
    """One harness process running ``source`` (a locustfile) for ``duration`` seconds."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        source: str,
        *,
        users: int,
        duration: float,
        args: list[str],
        classes: list[str] | None = None,
        spawn_rate: float = 1000,
    ) -> None:
        argv = harness_argv(
            workdir,
            name,
            source,
            users=users,
            duration=duration,
            args=args,
            classes=classes,
            spawn_rate=spawn_rate,
        )
        self.command = pinned(argv, "generator")
        self.duration = duration
        self.process: subprocess.Popen[str] | None = None
        self.stderr_path = workdir / f"{name}.stderr"

    def start(self) -> Generator:
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=self.stderr_path.open("w"),
            text=True,
            env=harness_env(),
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the harness and return its JSON report."""
        assert self.process is not None
        try:
            stdout, _ = self.process.communicate(timeout=timeout or self.duration + 120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise
        if self.process.returncode != 0:
            tail = self.stderr_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"generator failed ({self.process.returncode}):\n{tail}")
        return json.loads(stdout.strip().splitlines()[-1])

    def run(self) -> dict[str, Any]:
        return self.start().result()


def run_with_cpu(target: Target, generator: Generator) -> tuple[dict[str, Any], dict[str, float]]:
    """Run ``generator`` against ``target``; the report and both sides' CPU (s and % of a core)."""
    before = target.cpu()
    host_before = psutil.cpu_times()
    started = time.monotonic()
    result = generator.run()
    wall = time.monotonic() - started
    target_cpu = target.cpu() - before
    host = _host_busy_pct(host_before, psutil.cpu_times())
    elapsed = result.get("elapsed_s") or wall
    return result, cpu_shares(target_cpu, result["cpu_s"], elapsed, host, wall)


def cpu_shares(
    target_cpu_s: float,
    generator_cpu_s: float,
    elapsed_s: float,
    host_busy_pct: float,
    wall_s: float,
) -> dict[str, float]:
    """Both sides' CPU seconds and share of one core over ``elapsed_s``, and the host's."""
    elapsed = max(elapsed_s, 0.001)
    return {
        "target_cpu_s": round(target_cpu_s, 3),
        # The harness's own clock covers the run, not its start-up; so does its CPU time.
        "target_cpu_pct": round(100 * target_cpu_s / elapsed, 1),
        "generator_cpu_s": round(generator_cpu_s, 3),
        "generator_cpu_pct": round(100 * generator_cpu_s / elapsed, 1),
        # Every core of the machine, other people's work included.
        "host_busy_pct": host_busy_pct,
        "wall_s": round(wall_s, 2),
    }


def _host_busy_pct(before: Any, after: Any) -> float:
    idle = (after.idle + getattr(after, "iowait", 0)) - (before.idle + getattr(before, "iowait", 0))
    total = sum(after) - sum(before)
    return round(100 * (1 - idle / total), 1) if total > 0 else 0.0


def bottleneck(cpu: dict[str, float]) -> str | None:
    """Which side ran out of CPU: a process over 85% of its one core, else the whole host
    (every core over 90% busy, other work included), else ``None``."""
    sides = [
        (cpu.get("generator_cpu_pct", 0), "generator"),
        (cpu.get("target_cpu_pct", 0), "target"),
    ]
    busiest = max(sides)
    if busiest[0] >= 100 * SATURATED:
        return busiest[1]
    if cpu.get("host_busy_pct", 0) >= 90:
        return "host"
    return None
