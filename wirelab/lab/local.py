"""The local lab: targets, a Locust master and its workers as processes on loopback.

Every process is started in its own process group through :class:`ManagedProcess` and
stopped by pid when the lab closes, whatever happened in between (Ctrl-C included).

The lab's own targets run in as many processes as the run's connections need
(:func:`wirelab.capacity.target_process_plan`): one process for every protocol while they
fit one file limit, as the lab always ran; beyond that, each protocol in processes of its
own that share the protocol's port (``SO_REUSEPORT``: the kernel spreads new connections
over them) and one feed in a redis-server, so a client that reconnects onto another process
resumes where it left off. Each of those processes has an admin port (``/stats``,
``/admin/drop``, see :mod:`wirelab.targets.admin`).

A scenario whose only actions are ``drop_connections`` and ``kill`` runs here too, with no
balancer in front: every protocol then has processes of its own (a kill of ``sse`` leaves
``ws`` up), each with an admin port, all on one Redis feed, and :meth:`LocalLab.serve_control`
serves a :class:`~.process_orchestrator.ProcessOrchestrator` over them to the Locust master.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..capacity import target_process_plan
from ..limits import open_files_limit
from ..locust_command import Headless, WebUi, master_argv, worker_argv
from ..probes import http_ready, target_ready
from ..processes import ManagedProcess, free_port, free_ports
from ..protocols import PROTOCOL_ORDER, target_urls
from .control import ControlServer
from .local_orchestrator import LocalOrchestrator
from .process_orchestrator import ProcessOrchestrator
from .replicas import ReplicaError, ReplicaLab, ReplicaSettings, start_redis

HOST = "127.0.0.1"


class LabError(RuntimeError):
    """Part of the lab could not start; the run cannot complete (exit code 3)."""


@dataclass(slots=True)
class TargetSpec:
    """What the lab's own targets serve, when the user did not point at theirs."""

    protocols: list[str]
    rate: float = 20.0
    payload_size: int = 64
    retention: int = 10_000
    redis_url: str | None = None
    extra_args: list[str] = field(default_factory=list)
    #: Client connections per protocol (the scenario's users): how many processes serve each.
    #: Empty: one process for every protocol.
    connections: dict[str, int] = field(default_factory=dict)
    #: The scenario acts on these processes (``drop_connections``, ``kill``): each protocol
    #: in processes of its own, each with an admin port, the feed in Redis so that a process
    #: started in a killed one's place resumes it.
    acted_on: bool = False
    #: Processes per protocol beyond what its connections need: as many as a scenario kills
    #: at once, so that their clients fit into the others.
    spare: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class TargetProcess:
    """One of the lab's target processes: what it serves and where its admin port is."""

    protocols: tuple[str, ...]
    process: ManagedProcess
    #: ``None`` for the lab's single process, which needs no admin port.
    admin_port: int | None = None
    #: Its name among the processes of its protocol (``ws-2``), for the timeline and monitor.
    name: str = "targets"

    @property
    def admin_url(self) -> str | None:
        return None if self.admin_port is None else f"http://{HOST}:{self.admin_port}"

    def ready(self, ports: dict[str, int]) -> bool:
        """Its admin port says ready (when it has one), and so does each of its protocols'
        ports; with a shared port that may be a sibling answering, hence the admin port."""
        if self.admin_port is not None and not http_ready(HOST, self.admin_port):
            return False
        return all(target_ready(HOST, name, ports[name]) for name in self.protocols)


class LocalLab:
    """Starts and owns the lab's processes; :meth:`close` stops exactly those."""

    def __init__(self, run_dir: Path, *, python: str = sys.executable) -> None:
        self.run_dir = run_dir
        self.python = python
        #: The lab's own target processes (several per protocol when the run needs them).
        self.target_processes: list[TargetProcess] = []
        #: Each protocol's port on the lab's own target processes.
        self.target_ports: dict[str, int] = {}
        #: The redis-server of the shared feed, when the lab started one for its targets.
        self.redis: ManagedProcess | None = None
        #: Bearer token of the target processes' admin ports (``WIRELAB_ADMIN_TOKEN``).
        self.admin_token = secrets.token_urlsafe(24)
        #: The replicated lab (replicas, Redis, HAProxy) and its control API, when used.
        self.replica_lab: Any = None
        self.control: Any = None
        self.master: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self.master_port = 0
        self.web_port = 0

    # -- targets ---------------------------------------------------------------------

    def start_targets(self, spec: TargetSpec, *, ready_timeout: float = 30.0) -> dict[str, str]:
        """Serve ``spec.protocols`` from as many processes as ``spec.connections`` need, all
        sharing one feed; returns their URLs (one per protocol, whatever the processes)."""
        protocols = [name for name in PROTOCOL_ORDER if name in spec.protocols]
        ports = dict(zip(protocols, free_ports(len(protocols), HOST), strict=True))
        plan = target_process_plan(
            spec.connections,
            protocols,
            open_files_limit(),
            separate=spec.acted_on,
            spare=spec.spare,
        )
        # Several processes, or processes a scenario cuts and kills: admin ports, one feed.
        managed = len(plan) > 1 or spec.acted_on
        redis_url = spec.redis_url
        if managed and not redis_url:
            try:
                self.redis, redis_url = start_redis(self.run_dir / "redis")
            except ReplicaError as exc:
                raise LabError(str(exc)) from None
        shared = {name for name in protocols if sum(name in group for group in plan) > 1}
        numbers: dict[tuple[str, ...], int] = {}
        for group in plan:
            argv = self._target_argv(spec, group, ports, redis_url)
            admin_port = None
            numbers[group] = numbers.get(group, 0) + 1
            name = f"{'-'.join(group)}-{numbers[group]}" if managed else "targets"
            if managed:
                admin_port = free_port(HOST)
                argv += ["--admin-port", str(admin_port)]
                # A process started in a killed one's place binds the port its siblings hold.
                if shared.intersection(group) or spec.acted_on:
                    argv.append("--reuse-port")
            label = f"target-{name}" if managed else name
            process = ManagedProcess(
                argv,
                name=label,
                env=_child_env({"WIRELAB_ADMIN_TOKEN": self.admin_token}),
                log_path=self.run_dir / "logs" / f"{label}.log",
            ).start()
            self.target_processes.append(TargetProcess(group, process, admin_port, name))
        self.target_ports = ports
        for target in self.target_processes:
            try:
                target.process.wait_ready(lambda t=target: t.ready(ports), timeout=ready_timeout)
            except RuntimeError as exc:
                raise LabError(
                    f"targets did not become ready: {str(exc).splitlines()[0]}"
                ) from None
        return target_urls(HOST, ports)

    def serve_control(self) -> dict[str, str]:
        """Serve a :class:`~.process_orchestrator.ProcessOrchestrator` over the target
        processes on the control API; the environment the master needs to reach it."""
        orchestrator = ProcessOrchestrator(
            self.target_processes, self.target_ports, admin_token=self.admin_token
        )
        self.control = ControlServer(orchestrator).start()
        return {**self.control.environment(), "WIRELAB_ADMIN_TOKEN": self.admin_token}

    def _target_argv(
        self,
        spec: TargetSpec,
        protocols: tuple[str, ...],
        ports: dict[str, int],
        redis_url: str | None,
    ) -> list[str]:
        argv = [
            self.python,
            "-m",
            "wirelab",
            "targets",
            "serve",
            *protocols,
            "--host",
            HOST,
            "--ports",
            ",".join(f"{name}={ports[name]}" for name in protocols),
            "--rate",
            f"{spec.rate:g}",
            "--payload-size",
            str(spec.payload_size),
            "--retention",
            str(spec.retention),
            *spec.extra_args,
        ]
        if redis_url:
            argv += ["--redis-url", redis_url]
        return argv

    def start_replicas(
        self,
        replicas: dict[str, int],
        slots: dict[str, int],
        *,
        spec: TargetSpec,
        grace: float = 10.0,
        drain_delay: float = 0.5,
        retry_ms: int = 1000,
        retry_jitter_ms: int = 2000,
        min_ready: float = 0.0,
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Start the replicated lab (see :mod:`.replicas`) and serve its orchestrator on the
        control API; returns the users' URLs and the environment the master needs."""
        admin_token = secrets.token_urlsafe(24)
        settings = ReplicaSettings(
            log_dir=self.run_dir / "logs",
            redis_url="",
            python=self.python,
            rate=spec.rate,
            payload_size=spec.payload_size,
            retention=spec.retention,
            grace=grace,
            drain_delay=drain_delay,
            retry_ms=retry_ms,
            retry_jitter_ms=retry_jitter_ms,
            extra_args=spec.extra_args,
            admin_token=admin_token,
            min_ready=min_ready,
        )
        self.replica_lab = ReplicaLab(
            self.run_dir, settings, replicas, slots, redis_url=spec.redis_url
        )
        try:
            urls = self.replica_lab.start()
        except (ReplicaError, RuntimeError) as exc:
            raise LabError(
                f"the replicated lab did not start: {str(exc).splitlines()[0]}"
            ) from None
        self.control = ControlServer(LocalOrchestrator(self.replica_lab)).start()
        env = {**self.control.environment(), "WIRELAB_ADMIN_TOKEN": admin_token}
        return urls, env

    # -- locust ----------------------------------------------------------------------

    def start_master(
        self,
        locustfiles: list[Path],
        *,
        env: dict[str, str],
        workers: int,
        worker_wait_s: float,
        headless: Headless | None = None,
        web_port: int | None = None,
        web_host: str = HOST,
        web_login: bool = False,
    ) -> ManagedProcess:
        """Start the Locust master: headless runs start once the workers connect; without
        ``headless`` it serves its web UI."""
        self.master_port = free_port(HOST)
        web = None
        if headless is None:
            self.web_port = web_port or free_port(HOST)
            web = WebUi(web_host, self.web_port, login=web_login)
        argv = master_argv(
            locustfiles,
            bind_host=HOST,
            bind_port=self.master_port,
            workers=workers,
            worker_wait_s=worker_wait_s,
            csv_prefix=self.run_dir / "locust",
            headless=headless,
            web=web,
            python=self.python,
        )
        self.master = ManagedProcess(
            argv,
            name="locust-master",
            env=_child_env(env),
            log_path=self.run_dir / "logs" / "master.log",
        ).start()
        return self.master

    def start_workers(self, locustfiles: list[Path], count: int, *, env: dict[str, str]) -> None:
        """Start ``count`` worker processes that connect to the master."""
        for index in range(count):
            argv = worker_argv(
                locustfiles, master_host=HOST, master_port=self.master_port, python=self.python
            )
            worker = ManagedProcess(
                argv,
                name=f"locust-worker-{index}",
                env=_child_env(env),
                log_path=self.run_dir / "logs" / f"worker-{index}.log",
            ).start()
            self.workers.append(worker)

    def wait_master(self, timeout: float, *, on_tick: object = None) -> int | None:
        """Wait for the master to exit by itself; its exit code, ``None`` on timeout."""
        assert self.master is not None
        deadline = time.monotonic() + timeout
        while self.master.alive and time.monotonic() < deadline:
            if callable(on_tick):
                on_tick()
            time.sleep(0.25)
        return self.master.returncode

    # -- teardown --------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process this lab started: workers, master, then targets."""
        for worker in self.workers:
            worker.stop(grace=5)
        if self.master is not None:
            self.master.stop(grace=10)
        if self.control is not None:
            self.control.close()
        if self.replica_lab is not None:
            self.replica_lab.close()
        for target in self.target_processes:  # all drain at once, then each is waited for
            with contextlib.suppress(RuntimeError):  # already gone
                target.process.signal(signal.SIGTERM)
        for target in self.target_processes:
            target.process.stop(grace=15)
        if self.redis is not None:
            self.redis.stop(grace=5)


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


@contextmanager
def local_lab(run_dir: Path) -> Iterator[LocalLab]:
    """A :class:`LocalLab` that is always closed, even on Ctrl-C."""
    lab = LocalLab(run_dir)
    try:
        yield lab
    finally:
        lab.close()
