"""A bounded buffer in front of a network sink: the run goes on while the server is down.

Why a writer greenlet (and not threads, and not influxdb-client's batching WriteApi):
Locust monkey-patches every worker and the master, so sockets are gevent sockets and a
blocking HTTP call made from a greenlet yields to the loop while it waits. The work of a
sink is waiting on the network; encoding a few hundred lines a second is microseconds. A
real OS thread would gain nothing under the GIL, and a thread that calls patched sockets
needs its own hub. influxdb-client's batching WriteApi runs Rx schedulers on
``threading`` primitives that monkey-patching turns into greenlets behind its back, and it
retries, drops and flushes on its own terms, with no count of what it lost; so every
network sink here sends synchronously from one writer greenlet per sink, and this module
owns batching, retries, backoff, outage records and drop counts for all of them.

No silent loss: points wait in a bounded buffer (``max_points``, oldest dropped first when
full, and counted); transient failures (connection refused, timeouts, 5xx, 429) are
retried with exponential backoff capped at a few seconds; a rejection (any other 4xx: bad
line protocol, unknown database, bad credentials) drops that batch with an error log and a
count instead of retrying forever; points still unsent when the final flush times out are
counted as dropped too. Every outage is recorded with its start and end times.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import gevent
import gevent.event

__all__ = ["BufferedSink", "Outage", "RejectedError", "SinkStats", "TransientError", "Transport"]

logger = logging.getLogger("wirelab.metrics.sinks")

DEFAULT_MAX_POINTS = 100_000
DEFAULT_BATCH_POINTS = 5_000
BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 3.0
# A server that rejects every batch (bad token, no such database) logs once per this many s.
_REJECT_LOG_EVERY_S = 10.0


class TransientError(Exception):
    """The write may succeed later: connection refused, timeout, HTTP 5xx or 429."""


class RejectedError(Exception):
    """The server refused the write for good (HTTP 4xx other than 429).

    ``dropped`` is how many of the batch's points were not stored; InfluxDB 1.x stores the
    valid points of a partly bad batch and says how many it dropped.
    """

    def __init__(self, message: str, *, status: int, dropped: int) -> None:
        super().__init__(message)
        self.status = status
        self.dropped = dropped


class Transport(Protocol):
    """Sends one batch of line protocol; raises :class:`TransientError` or
    :class:`RejectedError`. Blocking (cooperative under gevent)."""

    def send(self, body: bytes, points: int) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class Outage:
    """A period when the sink could not write: from the first failed attempt to the next
    successful one (``end`` is ``None`` if the run ended first). Epoch seconds."""

    start: float
    end: float | None = None
    error: str = ""
    attempts: int = 0


@dataclass(slots=True)
class SinkStats:
    """What a sink did; reported per interval (``sink`` measurement) and in metrics.json."""

    name: str
    url: str
    kind: str
    #: Points the server acknowledged (or, for the file sink, written to the file).
    written: int = 0
    #: Failed attempts that were retried.
    retries: int = 0
    #: Points waiting now, and the most that ever waited.
    buffered: int = 0
    buffered_max: int = 0
    #: Points lost: total and by cause.
    dropped: int = 0
    dropped_overflow: int = 0
    dropped_rejected: int = 0
    dropped_unsent: int = 0
    max_points: int = 0
    last_error: str = ""
    outages: list[Outage] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BufferedSink:
    """A sink that buffers lines and sends them from its own writer greenlet.

    ``write`` never blocks; ``flush`` waits (cooperatively, bounded) until everything
    buffered was sent or rejected; ``close`` flushes and counts what is left as dropped.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        name: str,
        url: str,
        kind: str,
        max_points: int = DEFAULT_MAX_POINTS,
        batch_points: int = DEFAULT_BATCH_POINTS,
        backoff_initial: float = BACKOFF_INITIAL_S,
        backoff_max: float = BACKOFF_MAX_S,
    ) -> None:
        if max_points < 1:
            raise ValueError("max_points must be at least 1")
        self.name = name
        self.url = url
        self._transport = transport
        self._max_points = max_points
        self._batch_points = max(1, min(batch_points, max_points))
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._queue: deque[str] = deque()
        self._in_flight = 0
        self._stats = SinkStats(name=name, url=url, kind=kind, max_points=max_points)
        self._wake = gevent.event.Event()
        self._idle = gevent.event.Event()
        self._idle.set()
        self._closed = False
        self._last_reject_log = 0.0
        self._writer = gevent.spawn(self._run)

    # -- the caller's side ------------------------------------------------------------------

    def write(self, lines: Sequence[str]) -> None:
        """Queue lines for sending; when the buffer is full, the oldest are dropped (counted)."""
        if self._closed:
            self._count_dropped(len(lines), "unsent")
            return
        if not lines:
            return
        self._queue.extend(lines)
        overflow = len(self._queue) + self._in_flight - self._max_points
        if overflow > 0:
            overflow = min(overflow, len(self._queue))
            for _ in range(overflow):
                self._queue.popleft()
            self._count_dropped(overflow, "overflow")
            logger.warning(
                "sink %s: buffer full (%d points), dropped the %d oldest",
                self.name,
                self._max_points,
                overflow,
                extra={"sink": self.name, "dropped": overflow},
            )
        self._note_buffered()
        self._idle.clear()
        self._wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until everything buffered was sent; whether it was."""
        return self._idle.wait(timeout)

    def close(self, timeout: float) -> None:
        """Flush (bounded by ``timeout``), stop the writer, count whatever is left as dropped."""
        if self._closed:
            return
        flushed = self.flush(timeout)
        self._closed = True
        self._writer.kill(block=True, timeout=1.0)
        left = len(self._queue) + self._in_flight
        self._queue.clear()
        self._in_flight = 0
        if left:
            self._count_dropped(left, "unsent")
            logger.error(
                "sink %s: %d points still unsent after the final flush (%.1fs); counted as dropped",
                self.name,
                left,
                timeout,
                extra={"sink": self.name, "dropped": left},
            )
        elif not flushed:
            logger.warning("sink %s: final flush timed out", self.name)
        self._note_buffered()
        outage = self._current_outage()
        if outage is not None and outage.end is None:
            outage.end = time.time()
        self._transport.close()

    def stats(self) -> SinkStats:
        """Current figures (a live object; copy it to keep a snapshot)."""
        self._note_buffered()
        return self._stats

    # -- the writer greenlet ----------------------------------------------------------------

    def _run(self) -> None:
        backoff = self._backoff_initial
        while True:
            if not self._queue:
                self._note_buffered()
                self._idle.set()
                self._wake.clear()
                self._wake.wait()
                continue
            count = min(self._batch_points, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = count
            body = ("\n".join(batch) + "\n").encode()
            try:
                self._transport.send(body, count)
            except TransientError as exc:
                self._in_flight = 0
                # Back to the front, in order; the bound still holds (write() counted them).
                self._queue.extendleft(reversed(batch))
                self._on_transient(exc)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)
                continue
            except RejectedError as exc:
                self._in_flight = 0
                self._on_rejected(exc, count)
            else:
                self._in_flight = 0
                self._stats.written += count
                self._end_outage()
            backoff = self._backoff_initial

    def _on_transient(self, exc: TransientError) -> None:
        message = str(exc)
        self._stats.retries += 1
        self._stats.last_error = message
        outage = self._current_outage()
        if outage is None or outage.end is not None:
            outage = Outage(start=time.time(), error=message)
            self._stats.outages.append(outage)
            logger.warning(
                "sink %s: cannot write (%s); buffering up to %d points and retrying",
                self.name,
                message,
                self._max_points,
                extra={"sink": self.name},
            )
        outage.attempts += 1

    def _on_rejected(self, exc: RejectedError, count: int) -> None:
        dropped = max(0, min(exc.dropped, count))
        self._stats.written += count - dropped
        self._count_dropped(dropped, "rejected")
        self._stats.last_error = str(exc)
        # A rejection is an answer: the server is up, so an outage (if any) is over.
        self._end_outage()
        now = time.monotonic()
        if now - self._last_reject_log >= _REJECT_LOG_EVERY_S:
            self._last_reject_log = now
            logger.error(
                "sink %s: server rejected a batch (HTTP %d: %s); %d of %d points dropped, "
                "not retried (dropped so far: %d)",
                self.name,
                exc.status,
                exc,
                dropped,
                count,
                self._stats.dropped,
                extra={"sink": self.name, "status": exc.status},
            )

    def _end_outage(self) -> None:
        outage = self._current_outage()
        if outage is not None and outage.end is None:
            outage.end = time.time()
            logger.warning(
                "sink %s: writing again after %.1fs (%d failed attempts)",
                self.name,
                outage.end - outage.start,
                outage.attempts,
                extra={"sink": self.name},
            )

    # -- bookkeeping ------------------------------------------------------------------------

    def _current_outage(self) -> Outage | None:
        return self._stats.outages[-1] if self._stats.outages else None

    def _count_dropped(self, count: int, cause: str) -> None:
        if count <= 0:
            return
        self._stats.dropped += count
        setattr(self._stats, f"dropped_{cause}", getattr(self._stats, f"dropped_{cause}") + count)

    def _note_buffered(self) -> None:
        buffered = len(self._queue) + self._in_flight
        self._stats.buffered = buffered
        self._stats.buffered_max = max(self._stats.buffered_max, buffered)
