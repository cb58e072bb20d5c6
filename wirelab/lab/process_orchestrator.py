"""The :class:`~.orchestrator.Orchestrator` of the many-process lab: no balancer, no replicas.

When a run needs more connections than one target process holds, the local lab serves each
protocol from several processes sharing its port (``SO_REUSEPORT``: the kernel spreads new
connections over them) and one Redis feed (:mod:`.local`). The storms a scenario asks for
act on those processes directly, so a 100,000-connection storm never passes through a
proxy's single process:

- ``drop_connections``: ``POST /admin/drop`` on every process of the service, all at once
  (one thread each): each resets every client connection and keeps serving;
- ``kill``: SIGKILL ``count`` processes of each protocol (a crash: their clients see a
  reset), then start each again with the same command line on the same shared port; its
  clients reconnect onto its siblings or onto it and resume from the shared feed.

``rolling_restart`` and ``scale`` need address slots and a balancer to drain: a scenario
that asks for them runs on the replicated lab (:mod:`.replicas`), so here they only say so.
Every step is recorded as a lab event (``replica_stop``, ``replica_start``), which the
scenario driver writes on the run's timeline.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .orchestrator import ActionResult, OrchestratorError, select_services
from .replicas import LabEvents

if TYPE_CHECKING:  # local.py builds this orchestrator: importing it at run time is a cycle
    from .local import TargetProcess

__all__ = ["ProcessOrchestrator"]

#: Seconds a process started in a killed one's place has to become ready.
READY_TIMEOUT_S = 30.0
#: Seconds an admin call may take (a drop of 20,000 connections is a few hundred ms).
ADMIN_TIMEOUT_S = 30.0


class ProcessOrchestrator:
    """Orchestrator actions on the lab's target processes (each has an admin port)."""

    def __init__(
        self,
        processes: Sequence[TargetProcess],
        ports: dict[str, int],
        *,
        admin_token: str | None = None,
    ) -> None:
        self.processes = list(processes)
        self.ports = ports
        self.admin_token = admin_token
        self.events_log = LabEvents()
        self._locks = {protocol: threading.Lock() for protocol in ports}

    # -- the protocol's methods ------------------------------------------------------------

    def drop_connections(self, service: str) -> ActionResult:
        protocols = self._protocols("drop_connections", service)
        started = time.time()
        targets = [p for p in self.processes if set(p.protocols) & set(protocols)]
        # All at once: a network blip cuts every connection in the same instant, not one
        # process after another.
        with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
            answers = list(pool.map(self._drop, targets))
        total = sum(answers)
        return ActionResult(
            action="drop_connections",
            service=service,
            started_at=started,
            ended_at=time.time(),
            affected=[p.name for p in targets],
            detail=f"cut {total} connections on {len(targets)} processes",
        )

    def kill(self, service: str, count: int = 1) -> ActionResult:
        if count < 1:
            raise OrchestratorError(f"kill {service}: count must be at least 1, got {count}")
        protocols = self._protocols("kill", service)
        started = time.time()
        victims: list[TargetProcess] = []
        for protocol in protocols:
            serving = [p for p in self.processes if p.protocols == (protocol,)]
            if count > len(serving):
                raise OrchestratorError(
                    f"kill {service}: cannot kill {count} {protocol} processes, "
                    f"{len(serving)} running"
                )
            victims += serving[:count]
        with ThreadPoolExecutor(max_workers=len(victims)) as pool:
            list(pool.map(self._crash_and_restart, victims))
        return ActionResult(
            action="kill",
            service=service,
            started_at=started,
            ended_at=time.time(),
            affected=[p.name for p in victims],
            detail=f"killed {len(victims)} and started them again",
        )

    def rolling_restart(self, service: str, *, timeout: float = 300.0) -> ActionResult:
        raise self._needs_replicas("rolling_restart", service)

    def scale(self, service: str, replicas: int, *, timeout: float = 120.0) -> ActionResult:
        raise self._needs_replicas("scale", service)

    def wait_ready(self, service: str, *, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        protocols = set(self._protocols("wait_ready", service))
        for target in self.processes:
            if protocols & set(target.protocols):
                self._wait_ready(target, max(0.1, deadline - time.monotonic()))

    # -- what the control API adds ---------------------------------------------------------

    def replicas(self) -> list[dict[str, Any]]:
        """Every target process now, one row per protocol it serves (the target monitor)."""
        rows = []
        for target in self.processes:
            alive = target.process.alive
            for protocol in target.protocols:
                rows.append(
                    {
                        "name": target.name,
                        "protocol": protocol,
                        "port": self.ports[protocol],
                        "admin_url": target.admin_url,
                        "pid": target.process.pid if alive else None,
                        "alive": alive,
                        "draining": False,
                    }
                )
        return rows

    def events(self, after: int = 0) -> list[dict[str, Any]]:
        """The lab's events after sequence number ``after``."""
        return self.events_log.after(after)

    # -- helpers ---------------------------------------------------------------------------

    def _protocols(self, action: str, service: str) -> list[str]:
        return list(select_services(action, service, list(self.ports), "in this lab"))

    def _needs_replicas(self, action: str, service: str) -> OrchestratorError:
        return OrchestratorError(
            f"{action} {service}: the lab's processes have no balancer to drain behind; "
            "give the scenario replicas (the replicated lab)"
        )

    def _drop(self, target: TargetProcess) -> int:
        if target.admin_url is None:
            raise OrchestratorError(f"{target.name} has no admin port to cut its clients")
        request = urllib.request.Request(  # noqa: S310 - the lab's own loopback admin port
            target.admin_url + "/admin/drop", data=b"", method="POST"
        )
        if self.admin_token:
            request.add_header("Authorization", f"Bearer {self.admin_token}")
        try:
            with urllib.request.urlopen(request, timeout=ADMIN_TIMEOUT_S) as response:  # noqa: S310
                answer = json.loads(response.read() or b"{}")
        except (OSError, ValueError) as exc:
            raise OrchestratorError(f"{target.name}: admin drop failed: {exc}") from None
        return sum(int(n) for n in answer.get("dropped", {}).values())

    def _crash_and_restart(self, target: TargetProcess) -> None:
        protocol = target.protocols[0]
        with self._locks[protocol]:
            process = target.process
            pid = process.pid
            # One that had already died: restarting it is all the kill still has to do.
            with contextlib.suppress(RuntimeError):
                process.signal(signal.SIGKILL)
            process.stop(grace=0)
            self.events_log.add(
                "replica_stop",
                f"{target.name} killed (SIGKILL, pid {pid}): a crash, no drain",
                protocol=protocol,
                replica=target.name,
            )
            launched = time.monotonic()
            # The same command line: the same shared port (SO_REUSEPORT), admin port and feed.
            process.start()
            self._wait_ready(target, READY_TIMEOUT_S)
            self.events_log.add(
                "replica_start",
                f"{target.name} started again (pid {process.pid}), ready after "
                f"{time.monotonic() - launched:.1f}s",
                protocol=protocol,
                replica=target.name,
            )

    def _wait_ready(self, target: TargetProcess, timeout: float) -> None:
        check: Callable[[], bool] = lambda: target.ready(self.ports)  # noqa: E731
        try:
            target.process.wait_ready(check, timeout=timeout)
        except RuntimeError as exc:
            raise OrchestratorError(
                f"{target.name} did not become ready: {str(exc).splitlines()[0]}"
            ) from None
