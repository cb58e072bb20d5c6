"""The event feed's two messages: an event, and the reset that replaces a silent gap."""

from __future__ import annotations

import time

import orjson


def now_us() -> int:
    """Wall-clock time in epoch microseconds: the unit of every ``ts`` in the feed."""
    return time.time_ns() // 1000


class Event:
    """One feed event ``{seq, ts, data}``.

    ``seq`` increases by exactly one per event on a feed, so any client can detect a gap,
    a duplicate or reordering from ``seq`` alone. ``ts`` is the publish time in epoch
    microseconds, from which clients compute delivery lag.

    The JSON form is encoded once and cached: one event is sent to every subscriber of
    every protocol, and re-encoding it per connection would dominate fan-out cost.
    """

    __slots__ = ("_json", "data", "seq", "ts")

    def __init__(self, seq: int, ts: int, data: str) -> None:
        self.seq = seq
        self.ts = ts
        self.data = data
        self._json: bytes | None = None

    def to_dict(self) -> dict[str, int | str]:
        return {"seq": self.seq, "ts": self.ts, "data": self.data}

    @property
    def json(self) -> bytes:
        """The event as compact JSON bytes (cached)."""
        if self._json is None:
            self._json = orjson.dumps(self.to_dict())
        return self._json

    def __repr__(self) -> str:
        return f"Event(seq={self.seq}, ts={self.ts}, data=<{len(self.data)} chars>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.seq, self.ts, self.data) == (other.seq, other.ts, other.data)

    def __hash__(self) -> int:
        return hash((self.seq, self.ts))


class Reset:
    """The resume point fell out of retention: events ``since+1 .. first-1`` are gone.

    Sent instead of a silent gap, so a client can count the loss and knows that the
    next event it receives is ``first``.
    """

    __slots__ = ("first", "since")

    def __init__(self, since: int, first: int) -> None:
        self.since = since
        self.first = first

    @property
    def lost(self) -> int:
        """How many events the client can never receive."""
        return max(0, self.first - self.since - 1)

    def to_dict(self) -> dict[str, int | str]:
        return {"type": "reset", "since": self.since, "first": self.first, "lost": self.lost}

    @property
    def json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def __repr__(self) -> str:
        return f"Reset(since={self.since}, first={self.first})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reset):
            return NotImplemented
        return (self.since, self.first) == (other.since, other.first)

    def __hash__(self) -> int:
        return hash((self.since, self.first))


def make_payload(size: int, seq: int) -> str:
    """A printable payload of exactly ``size`` characters that differs between events."""
    if size <= 0:
        return ""
    stamp = f"{seq:x}:"
    return (stamp * (size // len(stamp) + 1))[:size]
