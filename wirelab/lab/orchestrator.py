"""The one interface scenarios use to act on targets, locally or on Kubernetes.

A scenario such as ``rolling-deploy`` or ``reconnect-storm`` only ever calls these methods,
so the same scenario file runs unchanged against local processes or a cluster. Each action
returns what happened (for the run's timeline) and raises :class:`OrchestratorError` with a
one-line reason when it cannot be done.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
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


#: What one service's part of an action did: the replicas it affected, one line of detail.
Outcome = tuple[list[str], str]


def select_services(
    action: str, service: str, available: Sequence[str], where: str
) -> tuple[str, ...]:
    """The services an action on ``service`` acts on: ``all`` is every one ``available``
    (``where`` says where, e.g. "on this release"); another name must be one of them."""
    if service == "all":
        return tuple(available)
    if service not in available:
        known = ", ".join([*available, "all"])
        raise OrchestratorError(f"{action} {service}: unknown service {where} (known: {known})")
    return (service,)


def gather(
    action: str, service: str, started_at: float, outcomes: Mapping[str, Outcome | Exception]
) -> ActionResult:
    """One action's result from each service's outcome (in the order given), the same for
    every orchestrator.

    A service that failed does not hide what the others did: the error names every one that
    failed. On one service its own error is raised unchanged, so a subclass of
    :class:`OrchestratorError` (a transient API error) stays one; any other exception
    becomes an :class:`OrchestratorError` with its message.
    """
    errors = {each: done for each, done in outcomes.items() if isinstance(done, Exception)}
    if len(outcomes) == 1 and errors:
        (error,) = errors.values()
        if isinstance(error, OrchestratorError):
            raise error
        raise OrchestratorError(str(error)) from error
    if errors:
        failed = "; ".join(f"{each}: {error}" for each, error in errors.items())
        raise OrchestratorError(f"{action} {service} failed: {failed}")
    affected: list[str] = []
    details: list[str] = []
    for each, (names, detail) in outcomes.items():  # type: ignore[misc]  # no error is left
        affected += names
        details.append(detail if len(outcomes) == 1 else f"{each}: {detail}")
    return ActionResult(
        action=action,
        service=service,
        started_at=started_at,
        ended_at=time.time(),
        affected=affected,
        detail="; ".join(details),
    )


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
