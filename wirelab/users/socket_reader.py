"""Reading a stream socket from the event loop itself: no greenlet switch per read.

A stream client spends its life parked on one socket and wakes for every event. Read the
gevent way (``sock.recv`` in the connection's greenlet), each wake-up costs a switch into
the greenlet and back, a second ``recv`` that fails with ``EAGAIN`` (an exception), and,
with a read timeout, a timer armed and cancelled: measured on 2,000 loopback sockets, about
11 µs of the generator's CPU per read against 4.5 µs for a read done in an event-loop
callback. At tens of thousands of subscribers per worker that difference is the worker.

:class:`SocketReader` does the reads in a callback of the loop (a libev I/O watcher) and
hands the bytes to ``on_data``; the connection's greenlet stays parked in :meth:`run`
until the stream ends: end of file, a read error, ``on_data`` raising, no bytes for
``idle_timeout`` seconds, or :meth:`cancel`. Because ``on_data`` runs inside the loop it
must not block; work that may (a reply on the socket) goes through :meth:`defer` and runs
in the greenlet before the next read. TLS sockets (and anything that is not a plain gevent
socket) are read in the greenlet instead, with the same contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gevent import get_hub
from gevent.hub import Waiter

__all__ = ["IdleStreamError", "SocketReader"]

#: Bytes per read: a burst of events in one call, without a large allocation for a few bytes.
RECV_BYTES = 16 * 1024

_ENDED = object()
_DEFERRED = object()


class IdleStreamError(ConnectionError):
    """No bytes at all (not even a heartbeat) for the reader's idle timeout: a dead peer."""


class SocketReader:
    """Reads one socket until the stream ends, calling ``on_data(bytes)`` for every read."""

    __slots__ = (
        "_deferred",
        "_idle_timeout",
        "_last_read",
        "_loop",
        "_on_data",
        "_outcome",
        "_raw",
        "_sock",
        "_timer",
        "_waiter",
        "_watcher",
    )

    def __init__(self, sock: Any, on_data: Callable[[bytes], None]) -> None:
        self._sock = sock
        self._on_data = on_data
        # A plain gevent socket wraps a non-blocking OS socket that can be read from the
        # loop; an SSL socket decrypts in its own recv and is read in the greenlet.
        raw = getattr(sock, "_sock", None)
        self._raw = raw if raw is not None and not hasattr(sock, "_sslobj") else None
        self._deferred: list[Callable[[], Any]] = []
        self._outcome: BaseException | None = None
        self._watcher: Any = None
        self._timer: Any = None
        self._waiter: Waiter | None = None
        self._loop: Any = None
        self._idle_timeout = 0.0
        self._last_read = 0.0

    def defer(self, work: Callable[[], Any]) -> None:
        """Run ``work`` in the reading greenlet after the current ``on_data`` returns,
        before the next read (for anything that may block, such as sending a reply)."""
        self._deferred.append(work)

    def run(self, idle_timeout: float) -> None:
        """Read until end of file (then return) or an error (then raise it).

        Raises:
            IdleStreamError: no bytes for ``idle_timeout`` seconds.
            Exception: whatever ``on_data`` or a deferred call raised, or the read's
                ``OSError``.
        """
        if self._raw is None:
            self._run_in_greenlet(idle_timeout)
            return
        hub = get_hub()
        loop = self._loop = hub.loop
        self._idle_timeout = idle_timeout
        self._last_read = loop.now()
        self._waiter = waiter = Waiter(hub)
        self._watcher = loop.io(self._raw.fileno(), 1)
        self._timer = loop.timer(idle_timeout)
        try:
            self._watcher.start(self._readable)
            self._timer.start(self._check_idle)
            while True:
                signal = waiter.get()
                waiter.clear()
                if signal is _ENDED:
                    break
                self._run_deferred()
                if self._watcher is None:  # cancelled while the deferred work ran
                    break
                self._watcher.start(self._readable)
        finally:
            self._stop_watchers()
            self._waiter = None
        if self._outcome is not None:
            raise self._outcome

    def cancel(self) -> None:
        """Stop reading now (from any greenlet): :meth:`run` returns as at end of file.

        Call it before closing the socket from outside the reading greenlet: an event-loop
        watcher must not outlive its file descriptor.
        """
        self._stop_watchers()
        waiter = self._waiter
        if waiter is not None:
            self._loop.run_callback(waiter.switch, _ENDED)

    # -- in the event loop ------------------------------------------------------------

    def _readable(self) -> None:
        try:
            data = self._raw.recv(RECV_BYTES)
        except BlockingIOError:
            return  # woken without data (another watcher of this descriptor read it)
        except OSError as exc:
            self._end(exc)
            return
        if not data:
            self._end(None)
            return
        self._last_read = self._loop.now()
        try:
            self._on_data(data)
        except Exception as exc:
            self._end(exc)
            return
        if self._deferred:
            self._watcher.stop()
            self._waiter.switch(_DEFERRED)  # type: ignore[union-attr]

    def _check_idle(self) -> None:
        quiet = self._loop.now() - self._last_read
        if quiet >= self._idle_timeout:
            self._end(IdleStreamError(f"no bytes for {self._idle_timeout:g}s"))
            return
        # Woken early by a read since: sleep for what is left of the timeout.
        self._timer.stop()
        self._timer = self._loop.timer(self._idle_timeout - quiet)
        self._timer.start(self._check_idle)

    def _end(self, outcome: BaseException | None) -> None:
        self._outcome = outcome
        self._stop_watchers()
        self._waiter.switch(_ENDED)  # type: ignore[union-attr]

    def _stop_watchers(self) -> None:
        watcher, self._watcher = self._watcher, None
        timer, self._timer = self._timer, None
        for each in (watcher, timer):
            if each is not None:
                each.stop()
                each.close()

    # -- in the greenlet --------------------------------------------------------------

    def _run_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        for work in deferred:
            work()

    def _run_in_greenlet(self, idle_timeout: float) -> None:
        sock = self._sock
        sock.settimeout(idle_timeout)
        on_data = self._on_data
        while True:
            try:
                data = sock.recv(RECV_BYTES)
            except TimeoutError:
                raise IdleStreamError(f"no bytes for {idle_timeout:g}s") from None
            if not data:
                return
            on_data(data)
            if self._deferred:
                self._run_deferred()
