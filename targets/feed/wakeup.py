"""One wake-up for every stream waiting on the feed, handed out a slice per loop turn.

When an event arrives, every subscriber of the replica must run: tens of thousands of
tasks, each writing one socket. Woken all at once (an :class:`asyncio.Event`), they all run
in one turn of the event loop, and for that whole turn (0.5 s and more at 20,000 streams)
the loop polls no socket: connections wait in the listen backlog, handshakes half done wait
for their next read, and a reconnect storm that arrives during fan-out sees slow or failed
handshakes. :class:`Wakeup` wakes its waiters :data:`WAKE_SLICE` at a time and schedules the
next slice for the following turn, so between two slices the loop accepts, reads and
answers handshakes; the fan-out itself takes as long as before.

It also costs less per wait than ``asyncio.wait_for(event.wait(), timeout)``: no task per
wait, one timer, and a timed-out or cancelled waiter is forgotten without scanning the list
of the others.
"""

from __future__ import annotations

import asyncio

__all__ = ["WAKE_SLICE", "Wakeup"]

#: Waiters woken per loop turn. One woken stream costs about 20-50 µs (a task step and a
#: socket write), so a slice is 10-25 ms of fan-out between two polls of the sockets: an
#: accept or a handshake read waits at most that long. See benchmarks/accept_rate.py.
WAKE_SLICE = 512


class Wakeup:
    """Fires once; :meth:`wait` returns ``True`` when it has fired, ``False`` on timeout.

    ``slice_size`` waiters are woken per loop turn (0: all at once, in one turn).
    """

    __slots__ = ("_dead", "_fired", "_waiters", "slice_size")

    def __init__(self, slice_size: int = WAKE_SLICE) -> None:
        self.slice_size = slice_size
        self._waiters: list[asyncio.Future[bool]] = []
        self._fired = False
        #: Waiters in the list that timed out or were cancelled (compacted away when they
        #: are half of it, so an idle feed does not grow the list every heartbeat).
        self._dead = 0

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`fire` (``True``) or ``timeout`` seconds (``False``)."""
        if self._fired:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(future)
        timer = None if timeout is None else loop.call_later(timeout, self._expire, future)
        try:
            return await future
        except asyncio.CancelledError:
            self._forget()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def fire(self) -> None:
        """Wake every waiter: the first slice now, the rest one slice per loop turn."""
        if self._fired:
            return
        self._fired = True
        waiters, self._waiters = self._waiters, []
        if waiters:
            self._wake(waiters, 0)

    def _wake(self, waiters: list[asyncio.Future[bool]], start: int) -> None:
        end = len(waiters) if self.slice_size <= 0 else start + self.slice_size
        for future in waiters[start:end]:
            if not future.done():
                future.set_result(True)
        if end < len(waiters):
            asyncio.get_running_loop().call_soon(self._wake, waiters, end)

    def _expire(self, future: asyncio.Future[bool]) -> None:
        if not future.done():
            future.set_result(False)
            self._forget()

    def _forget(self) -> None:
        if self._fired:
            return
        self._dead += 1
        if self._dead * 2 > len(self._waiters):
            self._waiters = [future for future in self._waiters if not future.done()]
            self._dead = 0
