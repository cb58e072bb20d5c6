"""Checking a feed as a client sees it: gaps, duplicates, reordering, resets and lag.

Every push or poll client (smoke client, Locust users) feeds each received event through
one :class:`SequenceChecker`, so "lost", "duplicated" and "late" mean the same thing for
every protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Holes wider than this are counted but not remembered seq by seq (memory stays bounded).
_TRACK_HOLES_UP_TO = 10_000


@dataclass(slots=True)
class SequenceChecker:
    """Tracks the last seq delivered to the application and classifies each arrival."""

    #: The highest seq delivered so far (0: nothing yet); resume from here.
    last_seq: int = 0
    delivered: int = 0
    #: Events that never arrived (sum of the widths of all holes).
    missing: int = 0
    #: Holes seen (one hole may be many events).
    gaps: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    #: Explicit resets from the server, and the events they declared lost.
    resets: int = 0
    reset_lost: int = 0
    #: Delivery lag of each delivered event, in microseconds (receive time - publish ts).
    lags_us: list[int] = field(default_factory=list)
    keep_lags: bool = True
    #: Seqs of the small holes still open (made at the first hole: an empty set is 216 bytes,
    #: and a worker holds one checker per connection).
    _seen_ahead: set[int] | None = None

    def observe(self, seq: int, ts_us: int, received_us: int) -> str:
        """Classify one event; returns ``ok``, ``gap``, ``duplicate`` or ``out_of_order``.

        Only ``ok`` and ``gap`` events count as delivered: a duplicate or a late event is
        not handed to the application twice.
        """
        expected = self.last_seq + 1
        if self.last_seq == 0 and self.delivered == 0 and self.resets == 0:
            # The first event of a live-only subscription may start anywhere.
            expected = seq
        if seq == expected:
            verdict = "ok"
        elif seq > expected:
            self.gaps += 1
            self.missing += seq - expected
            if seq - expected <= _TRACK_HOLES_UP_TO:
                # Remember small holes so a late arrival is told apart from a duplicate.
                if self._seen_ahead is None:
                    self._seen_ahead = set()
                self._seen_ahead.update(range(expected, seq))
            verdict = "gap"
        elif self._seen_ahead and seq in self._seen_ahead:
            # A hole filled late: it was counted missing, now it is reordering.
            self._seen_ahead.discard(seq)
            self.missing -= 1
            self.out_of_order += 1
            return "out_of_order"
        else:
            self.duplicates += 1
            return "duplicate"
        self.last_seq = seq
        self.delivered += 1
        if self.keep_lags:
            self.lags_us.append(received_us - ts_us)
        return verdict

    def reset(self, since: int, first: int) -> None:
        """The server declared ``since+1 .. first-1`` lost: count it and move on."""
        self.resets += 1
        self.reset_lost += max(0, first - since - 1)
        self.last_seq = max(self.last_seq, first - 1)
