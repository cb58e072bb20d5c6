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

A scenario with ``replicas`` or ``actions`` runs on the replicated lab (``wirelab.lab.replicas``:
N processes per protocol, one Redis, HAProxy); without them, on the one-process lab.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..units import parse_duration

__all__ = [
    "ACTIONS",
    "SERVICES",
    "Action",
    "LabShape",
    "parse_actions",
    "parse_lab",
    "parse_replicas",
]

#: What an action may do: the orchestrator's methods.
ACTIONS = ("rolling_restart", "kill", "drop_connections", "scale")
#: What it may act on: a target protocol, or every protocol of the run.
SERVICES = ("rest", "sse", "ws", "grpc", "all")
#: Largest replica count per protocol on one machine (each is a process).
MAX_REPLICAS = 16

_ACTION_KEYS = {"at", "do", "service", "count", "replicas", "timeout"}
_LAB_KEYS = {"grace", "drain_delay", "retry_ms", "retry_jitter_ms", "spare_slots", "min_ready"}


@dataclass(frozen=True, slots=True)
class Action:
    """One scenario action: at ``at`` seconds after the test starts, ``do`` on ``service``."""

    at: float
    do: str
    service: str
    #: ``kill``: how many replicas.
    count: int = 1
    #: ``scale``: the replica count wanted.
    replicas: int | None = None
    #: Seconds the action may take (rolling restart, scale); ``None``: the default.
    timeout: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """A short phrase for annotations: ``rolling_restart all``, ``kill sse x1``..."""
        if self.do == "kill":
            return f"kill {self.service} x{self.count}"
        if self.do == "scale":
            return f"scale {self.service} to {self.replicas}"
        return f"{self.do} {self.service}"


@dataclass(slots=True)
class LabShape:
    """How the replicated lab's target processes behave (scenario key ``lab``)."""

    grace: float = 10.0
    drain_delay: float = 0.5
    retry_ms: int = 1000
    retry_jitter_ms: int = 2000
    spare_slots: int = 1
    min_ready: float = 0.0


def _fail_default(key: str, problem: str) -> ValueError:
    return ValueError(f"{key}: {problem}")


def parse_replicas(value: object, fail: Any = _fail_default) -> dict[str, int]:
    """``3`` (every protocol) or ``{ws: 3, sse: 2}``; ``{"*": 3}`` stands for every protocol."""
    if isinstance(value, bool):
        raise fail("replicas", f"a whole number or a mapping of protocol to number, got {value!r}")
    if isinstance(value, int):
        return {"*": _replica_count(value, "replicas", fail)}
    if isinstance(value, dict) and value:
        counts: dict[str, int] = {}
        for protocol, count in value.items():
            if protocol not in SERVICES[:-1]:
                raise fail(f"replicas.{protocol}", "unknown protocol (known: rest, sse, ws, grpc)")
            if isinstance(count, bool) or not isinstance(count, int):
                raise fail(f"replicas.{protocol}", f"must be a whole number, got {count!r}")
            counts[protocol] = _replica_count(count, f"replicas.{protocol}", fail)
        return counts
    raise fail("replicas", f"a whole number or a mapping of protocol to number, got {value!r}")


def _replica_count(value: int, key: str, fail: Any) -> int:
    if not 1 <= value <= MAX_REPLICAS:
        raise fail(key, f"must be from 1 to {MAX_REPLICAS}, got {value}")
    return value


def parse_lab(value: object, fail: Any = _fail_default) -> LabShape:
    if value is None:
        return LabShape()
    if not isinstance(value, dict):
        raise fail("lab", f"a mapping with {', '.join(sorted(_LAB_KEYS))}")
    extra = sorted(map(str, set(value) - _LAB_KEYS))
    if extra:
        raise fail(f"lab.{extra[0]}", f"unknown key (known: {', '.join(sorted(_LAB_KEYS))})")
    shape = LabShape()
    for key in ("grace", "drain_delay", "min_ready"):
        if key in value:
            seconds = _seconds(value[key], f"lab.{key}", fail)
            setattr(shape, key, seconds)
    if shape.grace <= 0:
        raise fail("lab.grace", "must be more than 0")
    if shape.drain_delay >= shape.grace:
        raise fail("lab.drain_delay", "must be shorter than lab.grace")
    for key, maximum in (("retry_ms", 600_000), ("retry_jitter_ms", 600_000), ("spare_slots", 8)):
        if key in value:
            number = value[key]
            if isinstance(number, bool) or not isinstance(number, int):
                raise fail(f"lab.{key}", f"must be a whole number, got {number!r}")
            low = 1 if key == "spare_slots" else 0
            if not low <= number <= maximum:
                raise fail(f"lab.{key}", f"must be from {low} to {maximum}, got {number}")
            setattr(shape, key, number)
    return shape


def _seconds(value: object, key: str, fail: Any) -> float:
    if isinstance(value, bool):
        raise fail(key, f"not a duration: {value!r}")
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise fail(key, str(exc)) from None


def parse_actions(value: object, fail: Any = _fail_default, *, duration: float) -> list[Action]:
    """The ``actions`` list; every action must start before the run's ``duration`` ends."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail("actions", "a list of {at, do, service} mappings")
    actions = [
        _parse_action(item, f"actions[{index}]", fail, duration) for index, item in enumerate(value)
    ]
    return sorted(actions, key=lambda action: action.at)


def _parse_action(item: object, where: str, fail: Any, duration: float) -> Action:
    if not isinstance(item, dict):
        raise fail(where, "a mapping such as {at: 20s, do: rolling_restart, service: all}")
    extra = sorted(map(str, set(item) - _ACTION_KEYS))
    if extra:
        known = ", ".join(sorted(_ACTION_KEYS))
        raise fail(f"{where}.{extra[0]}", f"unknown key (known: {known})")
    for required in ("at", "do", "service"):
        if required not in item:
            raise fail(f"{where}.{required}", "required")
    at = _seconds(item["at"], f"{where}.at", fail)
    if not 0 <= at < duration:
        raise fail(f"{where}.at", f"must be within the run's duration ({duration:g}s), got {at:g}s")
    do, service = item["do"], item["service"]
    if do not in ACTIONS:
        raise fail(f"{where}.do", f"unknown action {do!r} (known: {', '.join(ACTIONS)})")
    if service not in SERVICES:
        known = ", ".join(SERVICES)
        raise fail(f"{where}.service", f"unknown service {service!r} (known: {known})")
    count = item.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_REPLICAS:
        raise fail(f"{where}.count", f"must be a whole number from 1 to {MAX_REPLICAS}")
    if "count" in item and do != "kill":
        raise fail(f"{where}.count", "only kill takes a count")
    replicas = _action_replicas(item, do, where, fail)
    timeout = None
    if "timeout" in item:
        timeout = _seconds(item["timeout"], f"{where}.timeout", fail)
        if timeout <= 0:
            raise fail(f"{where}.timeout", "must be more than 0")
    return Action(at, do, service, count, replicas, timeout)


def _action_replicas(item: dict[str, Any], do: object, where: str, fail: Any) -> int | None:
    replicas = item.get("replicas")
    if do != "scale":
        if replicas is not None:
            raise fail(f"{where}.replicas", "only scale takes replicas")
        return None
    if replicas is None:
        raise fail(f"{where}.replicas", "required for scale")
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise fail(f"{where}.replicas", f"must be a whole number, got {replicas!r}")
    return _replica_count(replicas, f"{where}.replicas", fail)
