"""The one interface scenarios use to act on targets, locally or on Kubernetes.

A scenario such as ``rolling-deploy`` or ``reconnect-storm`` only ever calls these methods,
so the same scenario file runs unchanged against local processes or a cluster. Each action
returns what happened (for the run's timeline) and raises :class:`OrchestratorError` with a
one-line reason when it cannot be done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class OrchestratorError(RuntimeError):
    """An action on the targets failed or timed out; the message says which and why."""


@dataclass(slots=True)
class ActionResult:
    """What an action did, for the timeline and the report."""

    action: str
    service: str
    started_at: float
    ended_at: float
    #: Replicas (pids or pod names) stopped, started or disconnected.
    affected: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def duration_s(self) -> float:
        return self.ended_at - self.started_at


@runtime_checkable
class Orchestrator(Protocol):
    """Acts on the replicas of a target service (``rest``, ``sse``, ``ws``, ``grpc``)."""

    def rolling_restart(self, service: str, *, timeout: float = 300.0) -> ActionResult:
        """Replace every replica, one at a time: max surge 1, max unavailable 0.

        A new replica is started and must be ready before an old one is drained, so
        capacity never drops; the old one drains gracefully (readiness off, goodbye to its
        clients, in-flight work finished).
        """
        ...

    def kill(self, service: str, count: int = 1) -> ActionResult:
        """Kill ``count`` replicas abruptly (SIGKILL / pod delete with no grace): a crash."""
        ...

    def drop_connections(self, service: str) -> ActionResult:
        """Cut every client connection at once without stopping replicas: a network blip."""
        ...

    def scale(self, service: str, replicas: int, *, timeout: float = 120.0) -> ActionResult:
        """Run ``replicas`` replicas, waiting until the new ones are ready."""
        ...

    def wait_ready(self, service: str, *, timeout: float = 120.0) -> None:
        """Return once every replica of ``service`` is ready; raise on timeout."""
        ...
