"""The :class:`~.orchestrator.Orchestrator` for the local lab: replicas are processes.

It acts on a :class:`~.replicas.ReplicaLab` (processes, address slots, HAProxy), the way a
Deployment controller and a Service would act on pods:

- ``rolling_restart``: one replica at a time, max surge 1, max unavailable 0. A new
  process starts in a free address slot under the old one's name; once it is ready (its
  own ``/readyz`` and the protocol's readiness) it enters HAProxy (``state ready``; gRPC
  clients already hold its address) and stays ready ``min_ready`` seconds (at least
  ``GRPC_MIN_READY_S`` for gRPC, so that its clients find it). Then the old one leaves
  HAProxy (``state drain``: no new connections, like an endpoint removed from a Service),
  gets SIGTERM, and must exit within its grace period; it is killed if not. Its slot is
  freed.
- ``kill``: SIGKILL ``count`` replicas (a crash: nobody tells the balancer, its health checks
  notice), then start replacements, as a ReplicaSet would.
- ``drop_connections``: ``POST /admin/drop`` on every replica: each resets every client
  connection at once and keeps serving (the network-blip storm).
- ``scale``: start replicas (ready, then into the balancer) or drain the highest-numbered
  ones away.
- ``wait_ready``: every serving replica answers ready.

``service`` is a protocol (``rest``, ``sse``, ``ws``, ``grpc``) or ``all``; with ``all`` the
protocols are acted on in parallel, as separate Deployments would roll at once. Every step
is recorded in the lab's event log (``replica_start``, ``replica_drain``, ``replica_stop``;
a killed replica's stop says so), which the scenario driver turns into timeline annotations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .orchestrator import ActionResult, OrchestratorError, Outcome, gather, select_services
from .replicas import PROXIED, Replica, ReplicaError, ReplicaLab

__all__ = ["LocalOrchestrator"]

#: Seconds beyond a replica's grace before an unfinished drain is cut with SIGKILL.
EXIT_MARGIN_S = 5.0
#: Seconds a new gRPC replica stays ready before an old one drains (a Deployment's
#: ``minReadySeconds``). gRPC clients balance over addresses they were given at start; one
#: that failed to connect to an empty slot retries only after its reconnect backoff (1 s in
#: the lab's generated locustfile). Draining the old replica before they found the new one
#: can leave a client with no ready replica for a moment: UNAVAILABLE unary calls.
GRPC_MIN_READY_S = 1.5


class LocalOrchestrator:
    """Orchestrator actions on the processes of a :class:`ReplicaLab`."""

    def __init__(self, lab: ReplicaLab) -> None:
        self.lab = lab

    # -- the protocol's methods ----------------------------------------------------------

    def rolling_restart(self, service: str, *, timeout: float = 300.0) -> ActionResult:
        return self._each(
            "rolling_restart", service, lambda protocol: self._roll(protocol, timeout)
        )

    def kill(self, service: str, count: int = 1) -> ActionResult:
        if count < 1:
            raise OrchestratorError(f"kill {service}: count must be at least 1, got {count}")
        return self._each("kill", service, lambda protocol: self._kill(protocol, count))

    def drop_connections(self, service: str) -> ActionResult:
        return self._each("drop_connections", service, self._drop)

    def scale(self, service: str, replicas: int, *, timeout: float = 120.0) -> ActionResult:
        if replicas < 1:
            raise OrchestratorError(f"scale {service}: at least 1 replica, got {replicas}")
        return self._each(
            "scale", service, lambda protocol: self._scale(protocol, replicas, timeout)
        )

    def wait_ready(self, service: str, *, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        for protocol in self._protocols("wait_ready", service):
            for replica in self.lab.pools[protocol].serving():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise OrchestratorError(f"wait_ready {service}: timed out after {timeout:g}s")
                try:
                    replica.wait_ready(remaining)
                except ReplicaError as exc:
                    raise OrchestratorError(str(exc)) from None

    # -- what the control API adds ----------------------------------------------------------

    def replicas(self) -> list[dict[str, Any]]:
        """Every replica process now, for the target monitor."""
        return self.lab.describe()

    def events(self, after: int = 0) -> list[dict[str, Any]]:
        """The lab's events after sequence number ``after``."""
        return self.lab.events.after(after)

    # -- per protocol ----------------------------------------------------------------------

    def _protocols(self, action: str, service: str) -> tuple[str, ...]:
        return select_services(action, service, self.lab.protocols, "in this lab")

    def _each(self, action: str, service: str, run: Callable[[str], Outcome]) -> ActionResult:
        protocols = self._protocols(action, service)
        started = time.time()
        outcomes: dict[str, Outcome | Exception] = {}
        with ThreadPoolExecutor(max_workers=len(protocols)) as pool:
            futures = {protocol: pool.submit(self._locked, protocol, run) for protocol in protocols}
            for protocol, future in futures.items():
                try:
                    outcomes[protocol] = future.result()
                except (OrchestratorError, ReplicaError) as exc:
                    outcomes[protocol] = exc
        return gather(action, service, started, outcomes)

    def _locked(
        self, protocol: str, run: Callable[[str], tuple[list[str], str]]
    ) -> tuple[list[str], str]:
        with self.lab.lock(protocol):
            return run(protocol)

    def _roll(self, protocol: str, timeout: float) -> tuple[list[str], str]:
        deadline = time.monotonic() + timeout
        pool = self.lab.pools[protocol]
        old_replicas = pool.serving()
        forced = 0
        for old in old_replicas:
            if time.monotonic() > deadline:
                raise OrchestratorError(f"rolling restart timed out after {timeout:g}s")
            self._start(protocol, old.name)
            if self._retire(old):
                forced += 1
        names = [replica.name for replica in old_replicas]
        detail = f"replaced {len(names)} replicas one at a time"
        if forced:
            detail += f"; {forced} did not exit within grace and were killed"
        return names, detail

    def _start(self, protocol: str, name: str) -> Replica:
        """Start ``name`` in a free slot, wait until ready, put it in the balancer."""
        lab = self.lab
        replica = lab.launch(lab.pools[protocol], name)
        launched = time.monotonic()
        try:
            replica.wait_ready(lab.settings.ready_timeout)
            if protocol in PROXIED:
                lab.haproxy.enable(protocol, replica.slot)
                lab.haproxy.wait_up(protocol, replica.slot)
        except Exception:
            replica.stop(grace=1)
            lab.forget(replica)
            raise
        lab.events.add(
            "replica_start",
            f"{name} started (pid {replica.pid}, port {replica.port}), "
            f"ready and balanced after {time.monotonic() - launched:.1f}s",
            protocol=protocol,
            replica=name,
        )
        min_ready = max(lab.settings.min_ready, GRPC_MIN_READY_S if protocol == "grpc" else 0)
        if min_ready > 0:
            time.sleep(min_ready)
        return replica

    def _retire(self, replica: Replica) -> bool:
        """Out of the balancer, SIGTERM, wait for the exit; ``True`` if it had to be killed."""
        lab = self.lab
        protocol = replica.protocol
        if protocol in PROXIED:
            lab.haproxy.drain(protocol, replica.slot)
        lab.events.add(
            "replica_drain",
            f"{replica.name} draining (pid {replica.pid}, SIGTERM, grace {lab.settings.grace:g}s)",
            protocol=protocol,
            replica=replica.name,
        )
        replica.terminate()
        code = replica.wait_exit(lab.settings.grace + EXIT_MARGIN_S)
        forced = code is None
        code = replica.stop(grace=0) if forced else replica.stop()
        took = time.time() - (replica.draining_since or time.time())
        how = "killed after its grace" if forced else f"exited with code {code}"
        lab.events.add(
            "replica_stop",
            f"{replica.name} {how} after {took:.1f}s",
            protocol=protocol,
            replica=replica.name,
        )
        if protocol in PROXIED:
            lab.haproxy.disable(protocol, replica.slot)
        lab.forget(replica)
        return forced

    def _kill(self, protocol: str, count: int) -> tuple[list[str], str]:
        lab = self.lab
        serving = lab.pools[protocol].serving()
        if count > len(serving):
            raise OrchestratorError(f"cannot kill {count} replicas: only {len(serving)} running")
        victims = serving[:count]
        for victim in victims:
            victim.kill()
        for victim in victims:
            victim.stop(grace=0)
            lab.events.add(
                "replica_stop",
                f"{victim.name} killed (SIGKILL, pid {victim.pid}): a crash, no drain",
                protocol=protocol,
                replica=victim.name,
            )
        # The balancer finds out by itself (failed checks); the slot stays out until reused.
        for victim in victims:
            lab.forget(victim)
        for victim in victims:
            self._start(protocol, victim.name)
        if protocol in PROXIED:
            # A crashed replica's slot that no replacement took goes back to maintenance.
            free = set(lab.pools[protocol].free_slots())
            for victim in victims:
                if victim.slot in free:
                    lab.haproxy.disable(protocol, victim.slot)
        names = [victim.name for victim in victims]
        return names, f"killed {len(names)} and started replacements"

    def _drop(self, protocol: str) -> tuple[list[str], str]:
        replicas = self.lab.pools[protocol].serving()
        total = 0
        for replica in replicas:
            try:
                answer = replica.admin("POST", "/admin/drop")
            except OSError as exc:
                raise OrchestratorError(f"{replica.name}: admin drop failed: {exc}") from None
            total += sum(int(n) for n in answer.get("dropped", {}).values())
        return [r.name for r in replicas], f"cut {total} connections on {len(replicas)} replicas"

    def _scale(self, protocol: str, wanted: int, timeout: float) -> tuple[list[str], str]:
        pool = self.lab.pools[protocol]
        serving = pool.serving()
        deadline = time.monotonic() + timeout
        changed: list[str] = []
        if wanted > len(serving):
            for _ in range(wanted - len(serving)):
                if time.monotonic() > deadline:
                    raise OrchestratorError(f"scale timed out after {timeout:g}s")
                changed.append(self._start(protocol, pool.next_name()).name)
            return changed, f"scaled up from {len(serving)} to {wanted}"
        for replica in reversed(serving[wanted:]):
            self._retire(replica)
            changed.append(replica.name)
        return changed, f"scaled from {len(serving)} to {wanted}"
