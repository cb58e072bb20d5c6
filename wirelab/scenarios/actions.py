"""The parts of a scenario that act on the targets: ``replicas``, ``lab`` and ``actions``.

```yaml
replicas: 3                  # per protocol; or a mapping: {ws: 3, sse: 2, rest: 2, grpc: 3}
lab:                         # how the lab's replicas behave (all optional)
  grace: 10s                 # a draining replica's time to finish before it is cut
  drain_delay: 500ms         # not-ready before the listener closes (HAProxy checks: 300 ms)
  retry_ms: 1000             # reconnect hint base sent to stream clients
  retry_jitter_ms: 2000      # random extra on the hint while draining
  spare_slots: 1             # free address slots per protocol (surge room)
  min_ready: 0s              # a new replica's ready time before the old one drains
                             # (minReadySeconds; gRPC waits at least 1.5 s: see the lab)
actions:                     # run by the Locust master at their time, on the run's timeline
  - {at: 20s, do: rolling_restart, service: all}
  - {at: 15s, do: drop_connections, service: ws}
  - {at: 15s, do: kill, service: sse, count: 1}
  - {at: 40s, do: scale, service: ws, replicas: 4}
```

A scenario with ``replicas``, or with a ``rolling_restart`` or ``scale``, runs on the replicated
lab (``wirelab.lab.replicas``: N processes per protocol, one Redis, HAProxy). One whose only
actions are ``drop_connections`` and ``kill`` runs on the lab's own processes, as many per
protocol as its connections need, sharing each port and one Redis feed, with no proxy in
front (``wirelab.lab.process_orchestrator``): a storm of 100,000 connections never has to fit
one HAProxy process. Without either, on the one-process lab.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from ..protocols import PROTOCOL_ORDER
from .fields import Duration, FieldError, Section, whole

__all__ = [
    "ACTIONS",
    "MAX_REPLICAS",
    "PROCESS_LAB_ACTIONS",
    "SERVICES",
    "Action",
    "LabShape",
    "Replicas",
]

#: What an action may do: the orchestrator's methods.
ACTIONS = ("rolling_restart", "kill", "drop_connections", "scale")
#: The actions the lab's own target processes carry out without replicas or a balancer.
PROCESS_LAB_ACTIONS = frozenset({"drop_connections", "kill"})
#: What it may act on: a target protocol, or every protocol of the run.
SERVICES = (*PROTOCOL_ORDER, "all")
#: Largest replica count per protocol on one machine (each is a process).
MAX_REPLICAS = 16

ReplicaCount = whole(1, MAX_REPLICAS)


def _one_of(choices: tuple[str, ...], what: str) -> Any:
    def read(value: object) -> str:
        if value not in choices:
            raise FieldError(f"unknown {what} {value!r} (known: {', '.join(choices)})")
        return str(value)

    return Annotated[str, BeforeValidator(read), WithJsonSchema({"enum": list(choices)})]


ActionName = _one_of(ACTIONS, "action")
ServiceName = _one_of(SERVICES, "service")
Milliseconds = whole(0, 600_000)
SpareSlots = whole(1, 8)


def _replicas(value: object) -> dict[str, int]:
    """``3`` → ``{"*": 3}`` (every protocol); a mapping of protocol to count stays one."""
    expected = f"a whole number or a mapping of protocol to number, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | dict) or value == {}:
        raise FieldError(expected)
    counts = value if isinstance(value, dict) else {"*": value}
    for protocol, count in counts.items():
        key = "" if protocol == "*" else str(protocol)
        if protocol != "*" and protocol not in PROTOCOL_ORDER:
            raise FieldError(f"unknown protocol (known: {', '.join(PROTOCOL_ORDER)})", key)
        if isinstance(count, bool) or not isinstance(count, int):
            raise FieldError(f"must be a whole number, got {count!r}", key)
        if not 1 <= count <= MAX_REPLICAS:
            raise FieldError(f"must be from 1 to {MAX_REPLICAS}, got {count}", key)
    return dict(counts)


#: Replicas per protocol, ``"*"`` standing for every protocol the scenario does not name.
Replicas = Annotated[
    dict[str, int],
    BeforeValidator(_replicas),
    WithJsonSchema(
        {
            "description": "replicas per protocol: one number for all, or a mapping",
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS},
                {
                    "type": "object",
                    "properties": {
                        protocol: {"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS}
                        for protocol in PROTOCOL_ORDER
                    },
                    "additionalProperties": False,
                    "minProperties": 1,
                },
            ],
        }
    ),
]


class Action(Section):
    """One scenario action: at ``at`` seconds after the test starts, ``do`` on ``service``."""

    model_config = ConfigDict(frozen=True)
    expects = "a mapping such as {at: 20s, do: rolling_restart, service: all}"

    at: Duration = Field(description="when, after the test starts (within its duration)")
    do: ActionName = Field(description="what the orchestrator does")
    service: ServiceName = Field(description="a protocol, or all of the run's")
    count: ReplicaCount = Field(1, description="kill: how many replicas")
    replicas: ReplicaCount | None = Field(None, description="scale: the replica count wanted")
    timeout: Duration | None = Field(
        None, description="how long the action may take (rolling_restart, scale)"
    )

    @model_validator(mode="after")
    def _fits_what_it_does(self) -> Action:
        given = self.model_fields_set
        if "count" in given and self.do != "kill":
            raise FieldError("only kill takes a count", "count")
        if self.do == "scale" and self.replicas is None:
            raise FieldError("required for scale", "replicas")
        if self.do != "scale" and self.replicas is not None:
            raise FieldError("only scale takes replicas", "replicas")
        if self.timeout is not None and self.timeout <= 0:
            raise FieldError("must be more than 0", "timeout")
        return self

    def to_dict(self) -> dict[str, Any]:
        """What :class:`Action` is built from again (the keys the action was given)."""
        return self.model_dump(exclude_defaults=True)

    def describe(self) -> str:
        """A short phrase for annotations: ``rolling_restart all``, ``kill sse x1``..."""
        if self.do == "kill":
            return f"kill {self.service} x{self.count}"
        if self.do == "scale":
            return f"scale {self.service} to {self.replicas}"
        return f"{self.do} {self.service}"


class LabShape(Section):
    """How the replicated lab's target processes behave (scenario key ``lab``)."""

    expects = "a mapping with grace, drain_delay, retry_ms, retry_jitter_ms, spare_slots, min_ready"

    grace: Duration = Field(10.0, description="a draining replica's time to finish")
    drain_delay: Duration = Field(0.5, description="not ready before the listener closes")
    retry_ms: Milliseconds = Field(1000, description="reconnect hint base, ms")
    retry_jitter_ms: Milliseconds = Field(
        2000, description="random extra on the hint while draining, ms"
    )
    spare_slots: SpareSlots = Field(1, description="free address slots per protocol")
    min_ready: Duration = Field(0.0, description="a new replica's ready time before the old drains")

    @model_validator(mode="after")
    def _drain_fits_the_grace(self) -> LabShape:
        if self.grace <= 0:
            raise FieldError("must be more than 0", "grace")
        if self.drain_delay >= self.grace:
            raise FieldError("must be shorter than lab.grace", "drain_delay")
        return self
