"""How long a client waits before it reconnects: one policy object per connection.

Deploy day is decided here. Every client of a restarted replica loses its connection in the
same instant; if they all come back after the same delay, the remaining replicas take a
reconnect storm. The policies, named as in a scenario or on the command line::

    immediate                          0 s, always (the storm, for comparison)
    fixed:delay=1                      the same delay every time
    exponential:base=0.5,cap=30        min(cap, base * 2**attempt)
    full_jitter:base=0.5,cap=30        uniform(0, min(cap, base * 2**attempt))
    decorrelated:base=0.5,cap=30       min(cap, uniform(base, previous * 3))  (AWS)
    server_hint:base=0.5,cap=30        the server's hint (SSE retry:/goaway, WS close
                                       reason, gRPC GoAway), else full jitter

``attempt`` counts the reconnect attempts since the last successful connection (0 for the
first). Values are seconds and accept units (``500ms``, ``2s``, ``1m``). A policy holds
state (``decorrelated`` remembers its previous delay, and says so with ``stateful``), so
every connection gets its own instance of it: :meth:`ReconnectPolicy.from_spec` per
connection, or :meth:`ReconnectPolicy.copy`; a policy without state may be shared.
Pass ``rng=random.Random(seed)`` for reproducible delays (tests); without it, policies share
one process-wide generator.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from .units import parse_duration

__all__ = [
    "POLICIES",
    "Decorrelated",
    "Exponential",
    "Fixed",
    "FullJitter",
    "Immediate",
    "ReconnectPolicy",
    "ServerHint",
]

#: Longest delay any policy returns: a hint or spec beyond it is a mistake, not a plan.
MAX_DELAY_S = 600.0

#: One params dict per policy class and parameter values, shared by every policy made so.
_PARAMS: dict[tuple[Any, ...], dict[str, float]] = {}

#: The RNG of policies built without one. Shared on purpose: a ``random.Random`` holds 2.5 KB
#: of state, and a worker holds one policy per connection (tens of thousands).
_SHARED_RNG = random.Random()


class ReconnectPolicy(ABC):
    """Delay before reconnect attempt ``attempt``; subclasses are the named policies."""

    __slots__ = ("params", "rng")

    #: The name used in specs (``full_jitter:base=0.5``).
    name: ClassVar[str] = ""
    #: Parameters the spec may set, with their defaults in seconds.
    defaults: ClassVar[dict[str, float]] = {}
    #: Whether an instance remembers anything between delays; one without state may be
    #: shared by many connections.
    stateful: ClassVar[bool] = False

    def __init__(self, rng: random.Random | None = None, **params: float) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"reconnect policy {self.name!r} has no parameter {sorted(unknown)[0]!r} "
                f"(it takes: {', '.join(self.defaults) or 'no parameters'})"
            )
        values = {**self.defaults, **params}
        for key, value in values.items():
            if not 0 <= value <= MAX_DELAY_S:
                raise ValueError(
                    f"reconnect policy {self.name!r}: {key}={value:g}s is outside "
                    f"0..{MAX_DELAY_S:g}s"
                )
        #: The parameters in seconds. Read-only: policies with equal parameters share one
        #: dict (a worker holds a policy per connection).
        self.params = _PARAMS.setdefault((type(self), *sorted(values.items())), values)
        self.rng = rng if rng is not None else _SHARED_RNG
        self._check()

    def _check(self) -> None:
        """Validate parameter combinations (override when there are any)."""

    @abstractmethod
    def next_delay(self, attempt: int, hint_s: float | None = None) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (0-based).

        ``hint_s`` is the server's suggestion, if it sent one; only ``server_hint`` uses it,
        the others ignore it on purpose (that is what they are compared against).
        """

    def reset(self) -> None:
        """A connection succeeded: the next failure starts from attempt 0 again."""

    def copy(self) -> ReconnectPolicy:
        """A fresh policy with the same parameters and state of its own (a seeded policy's
        copy gets its own RNG, seeded from this one, so tests stay reproducible)."""
        rng = None if self.rng is _SHARED_RNG else random.Random(self.rng.random())
        return type(self)(rng, **self.params)

    @property
    def spec(self) -> str:
        """The spec string that builds this policy again."""
        if not self.params:
            return self.name
        args = ",".join(f"{key}={value:g}" for key, value in self.params.items())
        return f"{self.name}:{args}"

    def __repr__(self) -> str:
        return f"<ReconnectPolicy {self.spec}>"

    @staticmethod
    def from_spec(spec: str, rng: random.Random | None = None) -> ReconnectPolicy:
        """Build a policy from ``name[:key=value,...]``, e.g. ``full_jitter:base=0.5,cap=10``.

        Raises:
            ValueError: unknown policy or parameter, malformed pair, or a bad value; the
                message names the problem and what would have been valid.
        """
        text = (spec or "").strip()
        name, _, arguments = text.partition(":")
        name = name.strip().lower().replace("-", "_")
        policy_class = POLICIES.get(name)
        if policy_class is None:
            raise ValueError(
                f"unknown reconnect policy {name or text!r} (choose from: {', '.join(POLICIES)})"
            )
        params: dict[str, float] = {}
        for pair in filter(None, (part.strip() for part in arguments.split(","))):
            key, equals, value = pair.partition("=")
            key = key.strip()
            if not equals or not key or not value.strip():
                raise ValueError(
                    f"reconnect policy {name!r}: expected key=value, got {pair!r} "
                    f"(example: {name}:{_example(policy_class)})"
                )
            if key in params:
                raise ValueError(f"reconnect policy {name!r}: {key} given twice")
            try:
                params[key] = parse_duration(value)
            except ValueError:
                raise ValueError(
                    f"reconnect policy {name!r}: {key}={value.strip()!r} is not a duration "
                    "(examples: 0.5, 500ms, 2s)"
                ) from None
        return policy_class(rng, **params)


def _example(policy_class: type[ReconnectPolicy]) -> str:
    return ",".join(f"{key}={value:g}" for key, value in policy_class.defaults.items()) or ""


class Immediate(ReconnectPolicy):
    """Reconnect at once, every time: the reconnect storm this lab exists to show."""

    __slots__ = ()

    name = "immediate"
    defaults: ClassVar[dict[str, float]] = {}

    def next_delay(self, attempt: int, hint_s: float | None = None) -> float:
        return 0.0


class Fixed(ReconnectPolicy):
    """The same delay every time: clients of one replica still return together."""

    __slots__ = ()

    name = "fixed"
    defaults: ClassVar[dict[str, float]] = {"delay": 1.0}

    def next_delay(self, attempt: int, hint_s: float | None = None) -> float:
        return self.params["delay"]


class _Backoff(ReconnectPolicy):
    __slots__ = ()
    defaults: ClassVar[dict[str, float]] = {"base": 0.5, "cap": 30.0}

    def _check(self) -> None:
        if self.params["base"] > self.params["cap"]:
            raise ValueError(
                f"reconnect policy {self.name!r}: base={self.params['base']:g}s is above "
                f"cap={self.params['cap']:g}s"
            )

    def _ceiling(self, attempt: int) -> float:
        base, cap = self.params["base"], self.params["cap"]
        # 2**attempt overflows float past ~1024 attempts; the cap is reached long before.
        return cap if attempt >= 60 else min(cap, base * 2 ** max(0, attempt))


class Exponential(_Backoff):
    """``min(cap, base * 2**attempt)``: spaces retries out, but keeps clients in lockstep."""

    __slots__ = ()

    name = "exponential"

    def next_delay(self, attempt: int, hint_s: float | None = None) -> float:
        return self._ceiling(attempt)


class FullJitter(_Backoff):
    """``uniform(0, min(cap, base * 2**attempt))``: spreads a storm over the whole window."""

    __slots__ = ()

    name = "full_jitter"

    def next_delay(self, attempt: int, hint_s: float | None = None) -> float:
        return self.rng.uniform(0.0, self._ceiling(attempt))


class Decorrelated(_Backoff):
    """AWS "decorrelated jitter": ``min(cap, uniform(base, previous * 3))``."""

    __slots__ = ("_previous",)

    name = "decorrelated"

    def __init__(self, rng: random.Random | None = None, **params: float) -> None:
        super().__init__(rng, **params)
        self._previous = self.params["base"]

    def next_delay(self, attempt: int, hint_s: float | None = None) -> float:
        base, cap = self.params["base"], self.params["cap"]
        delay = min(cap, self.rng.uniform(base, max(base, self._previous * 3)))
        self._previous = delay
        return delay

    def reset(self) -> None:
        self._previous = self.params["base"]


class ServerHint(FullJitter):
    """Wait as long as the server asked (it jitters per client); full jitter without a hint.

    A hint is capped at ``cap``: a server must not be able to park its clients for hours.
    """

    __slots__ = ()

    name = "server_hint"

    def next_delay(self, attempt: int, hint_s: float | None = None) -> float:
        if hint_s is not None and hint_s >= 0:
            return min(hint_s, self.params["cap"])
        return super().next_delay(attempt)


#: Every policy by its spec name.
POLICIES: dict[str, type[ReconnectPolicy]] = {
    policy.name: policy
    for policy in (Immediate, Fixed, Exponential, FullJitter, Decorrelated, ServerHint)
}
