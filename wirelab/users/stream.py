"""The stream session: one mechanism behind every push and poll user.

SSE, the WebSocket feed, gRPC ``Subscribe`` and the polling users all do the same things
around their protocol: keep a resume point that survives reconnects, check every event
(gap, duplicate, out of order, lag), count the connection's life (connects, disconnects,
reconnects, failed connects, goaways, the ``connected`` gauge), time each reconnect from the
disconnect to the first event after resuming, and reconnect under a policy. That lives here,
once. A protocol supplies only ``stream_once(since)``: open the stream at ``since``, call
:meth:`StreamSession.connected` when it is established, feed it what arrives, and return (or
raise) when it ends.

Where the figures go:

- everything is counted into ``recorder().stream(protocol, name)`` (exact, every event);
- each delivered event is also fired as a Locust request event ``"<protocol> deliver"``
  with the delivery lag as ``response_time`` and ``context={"wirelab_stream": True}``, so
  Locust's web UI and CSV show lag (wirelab's metrics plugin skips these: the stream series
  already has them). ``--deliver-sample`` thins these out for very high event rates; gaps,
  duplicates and reordering are always fired, as failures;
- opening a stream fires ``"<protocol> connect"`` (handshake time; a failed handshake is a
  failed request), which is what a reconnect storm shows first.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import gevent
from locust.exception import StopTest, StopUser
from locust.runners import STATE_CLEANUP, STATE_STOPPED, STATE_STOPPING
from locust.user.task import LOCUST_STATE_WAITING

from ..metrics.recorder import recorder
from ..reconnect import ReconnectPolicy
from ..sequence import SequenceChecker
from .options import deliver_sample_every, reconnect_policy
from .source_addresses import bind_source

__all__ = [
    "GoAwayError",
    "SequenceAnomalyError",
    "StreamEndedError",
    "StreamSession",
    "now_us",
    "open_socket",
    "run_stream_user",
    "shared",
]

log = logging.getLogger(__name__)

#: The context of every deliver event; one shared dict (listeners only read it).
_STREAM_CONTEXT: dict[str, Any] = {"wirelab_stream": True}

#: A connection that lasted this long counts as a success even if no event arrived (an idle
#: feed), so the backoff starts over at attempt 0.
STABLE_AFTER_S = 5.0


_shared_values: dict[Any, Any] = {}


def shared(value: Any) -> Any:
    """One object for every equal ``value`` in this process (a list of URLs, a settings
    object), for what users hold read-only: a worker holds tens of thousands of users.

    Lists are compared by their items; anything else must be hashable.
    """
    key = (type(value), tuple(value)) if isinstance(value, list) else (type(value), value)
    return _shared_values.setdefault(key, value)


_shared_policies: dict[tuple[type, str], ReconnectPolicy] = {}


def _one_per_connection_or_shared(policy: ReconnectPolicy) -> ReconnectPolicy:
    """A policy with state stays the connection's own; one without is shared by all."""
    if policy.stateful:
        return policy
    return _shared_policies.setdefault((type(policy), policy.spec), policy)


def now_us() -> int:
    """Wall-clock epoch microseconds: the unit of the feed's ``ts``."""
    return time.time_ns() // 1000


class StreamEndedError(ConnectionError):
    """The server ended the stream (EOF, close frame, stream status) without an error."""


class GoAwayError(StreamEndedError):
    """The server said it is going away (draining), possibly with a reconnect hint."""


class SequenceAnomalyError(Exception):
    """Reported as the failure of a ``deliver`` event: a gap, duplicate or reordering."""


#: Runner states in which the run's time is up: its users are being (or have been) stopped.
_ENDED = frozenset({STATE_CLEANUP, STATE_STOPPING, STATE_STOPPED})


class StreamSession:
    """One client stream's resume point, checks, counters and reconnect loop.

    ``name`` is the stream series (and Locust deliver event) name, e.g. ``"sse deliver"``;
    ``deliver_name`` overrides the Locust event name when it should differ (polling).
    ``since`` is where the very first connection starts (``None``: live only); every later
    one resumes from :attr:`resume_point`.
    """

    # Tens of thousands live in one worker: no per-instance dict.
    __slots__ = (
        "_connected_at",
        "_disconnected_at",
        "_events_this_connection",
        "_ever_connected",
        "_hint_s",
        "_request_event",
        "_runner",
        "_sampled",
        "_url_index",
        "attempt",
        "checker",
        "closed",
        "connect_name",
        "deliver_name",
        "environment",
        "initial_since",
        "is_connected",
        "name",
        "policy",
        "protocol",
        "sample_every",
        "series",
        "sticky_hint_s",
    )

    def __init__(
        self,
        environment: Any,
        protocol: str,
        name: str,
        *,
        policy: ReconnectPolicy,
        since: int | None = None,
        deliver_name: str | None = None,
        sample_every: int = 1,
        connect_name: str | None = None,
    ) -> None:
        self.environment = environment
        self.protocol = protocol
        self.name = name
        self.deliver_name = deliver_name or name
        # One string per name, not one per session.
        self.connect_name = sys.intern(connect_name or f"{protocol} connect")
        self.policy = policy
        self.initial_since = since
        self.sample_every = sample_every
        # Lags go to the histogram; a per-event list would grow without bound in a soak.
        self.checker = SequenceChecker(keep_lags=False)
        self.series = recorder().stream(protocol, name)
        # The event hook, not its bound ``fire``: one object fewer per session.
        self._request_event = environment.events.request if environment is not None else None
        # Users start once the runner exists; looked up here, not on every event.
        self._runner = getattr(environment, "runner", None)
        self._sampled = 0
        #: Whether a stream is open right now (the gauge counts this session once).
        self.is_connected = False
        self._connected_at = 0.0
        self._events_this_connection = 0
        self._ever_connected = False
        #: Monotonic time of the last unplanned disconnect; cleared by the next event.
        self._disconnected_at: float | None = None
        #: One-shot hint (goaway, close reason) and the sticky one (SSE ``retry:``), seconds.
        self._hint_s: float | None = None
        self.sticky_hint_s: float | None = None
        self.attempt = 0
        self.closed = False
        self._url_index = 0

    # -- the resume point -------------------------------------------------------------

    @property
    def resume_point(self) -> int | None:
        """The seq to resume after: the last one delivered, else the initial ``since``."""
        if self.checker.last_seq > 0:
            return self.checker.last_seq
        return self.initial_since

    def anchor(self, seq: int) -> None:
        """The server said where a live-only stream starts (e.g. WS ``subscribed.since``).

        From then on the first event must be ``seq + 1``, and a reconnect before any event
        resumes from ``seq`` instead of going live again and silently skipping the gap.
        """
        checker = self.checker
        if checker.last_seq == 0 and checker.delivered == 0 and seq > 0:
            checker.last_seq = seq

    # -- connection life --------------------------------------------------------------

    def connected(self, handshake_s: float | None = None) -> None:
        """The stream is established (headers, handshake, subscribe acknowledged)."""
        if self.is_connected:
            return
        series = self.series
        series.connects += 1
        if self._ever_connected:
            series.reconnects += 1
        self._ever_connected = True
        self.is_connected = True
        series.connected += 1
        self._connected_at = time.monotonic()
        self._events_this_connection = 0
        if handshake_s is not None and self._request_event is not None:
            self._request_event.fire(
                request_type=self.protocol,
                name=self.connect_name,
                response_time=handshake_s * 1000,
                response_length=0,
                exception=None,
                context={},
            )

    def connect_failed(self, error: BaseException, handshake_s: float = 0.0) -> None:
        """A connection attempt failed before the stream was established."""
        self.series.connect_failures += 1
        if self._request_event is not None:
            self._request_event.fire(
                request_type=self.protocol,
                name=self.connect_name,
                response_time=handshake_s * 1000,
                response_length=0,
                exception=error,
                context={},
            )

    def disconnected(self, *, planned: bool = False) -> None:
        """The open stream ended; ``planned`` when this client closed it on purpose."""
        if not self.is_connected:
            return
        self.is_connected = False
        series = self.series
        series.connected -= 1
        if planned:
            return
        series.disconnects += 1
        if self._disconnected_at is None:
            self._disconnected_at = time.monotonic()
        if self._events_this_connection or time.monotonic() - self._connected_at >= STABLE_AFTER_S:
            # It worked for a while: the next failure is a first attempt again.
            self.attempt = 0
            self.policy.reset()

    def goaway(self, hint_s: float | None) -> None:
        """The server is draining and asked to come back after ``hint_s`` (if given)."""
        self.series.goaways += 1
        if hint_s is not None:
            self._hint_s = hint_s

    def hint(self, hint_s: float | None) -> None:
        """A one-shot reconnect hint without a goaway (e.g. a WS close reason)."""
        if hint_s is not None:
            self._hint_s = hint_s

    # -- what arrives -------------------------------------------------------------------

    def event(self, seq: int, ts_us: int, size: int = 0) -> str:
        """One feed event; returns the checker's verdict.

        Once the run's time is up (the runner is stopping its users) an in-order event
        still moves the resume point but is not recorded: read while the process tears its
        users down, its lag would be the teardown's (measured: up to 40 ms for every client
        of an event), and it would land in the final report that thresholds are judged on.
        Anomalies (gaps, duplicates, reordering) are recorded whenever they are seen.
        """
        received = now_us()
        checker = self.checker
        missing = checker.missing
        verdict = checker.observe(seq, ts_us, received)
        if verdict == "ok" and self._runner is not None and self._runner.state in _ENDED:
            return verdict
        lag_us = received - ts_us
        series = self.series
        series.record_event(verdict, lag_us)
        if checker.missing != missing:
            # A hole's width (or a late arrival filling one): only the checker knows it.
            series.missing += checker.missing - missing
        self._events_this_connection += 1
        if self._disconnected_at is not None and verdict in ("ok", "gap"):
            series.reconnect_time.record((time.monotonic() - self._disconnected_at) * 1e6)
            self._disconnected_at = None
        request_event = self._request_event
        if request_event is None:
            return verdict
        if verdict == "ok":
            every = self.sample_every
            if not every:
                return verdict
            self._sampled += 1
            if self._sampled < every:
                return verdict
            self._sampled = 0
            exception = None
        elif verdict == "gap":
            exception = SequenceAnomalyError(f"gap before seq {seq}")
        else:
            exception = SequenceAnomalyError(f"{verdict.replace('_', ' ')} seq {seq}")
        request_event.fire(
            request_type=self.protocol,
            name=self.deliver_name,
            response_time=lag_us / 1000,
            response_length=size,
            exception=exception,
            context=_STREAM_CONTEXT,
        )
        return verdict

    def reset(self, since: int, first: int) -> None:
        """The server declared ``since+1 .. first-1`` gone (out of retention): not a gap."""
        checker = self.checker
        lost_before = checker.reset_lost
        checker.reset(since, first)
        self.series.resets += 1
        self.series.reset_lost += checker.reset_lost - lost_before
        self._events_this_connection += 1

    # -- the loop -------------------------------------------------------------------------

    def next_url(self, urls: list[str]) -> str:
        """Round-robin over replicas: each (re)connect goes to the next URL in the list."""
        url = urls[self._url_index % len(urls)]
        self._url_index += 1
        return url

    @classmethod
    def for_user(cls, user: Any, name: str, **extra: Any) -> StreamSession:
        """The session of a stream user, configured from its class and Locust's options.

        Every push and poll user takes its reconnect policy, starting point and deliver-event
        sampling the same way; this is that one way.
        """
        environment = user.environment
        return cls(
            environment,
            user.protocol,
            name,
            policy=_one_per_connection_or_shared(reconnect_policy(environment, user.reconnect)),
            since=user.start_since,
            sample_every=deliver_sample_every(environment),
            **extra,
        )

    def start_at(self, index: int) -> None:
        """Spread users over replicas: this session's first URL is ``urls[index % n]``."""
        self._url_index = index

    def run_forever(
        self,
        stream_once: Callable[[int | None], None],
        *,
        sleep: Callable[[float], Any] = gevent.sleep,
    ) -> None:
        """Open, read, reconnect with the policy, resume from :attr:`resume_point`; forever.

        Returns only when :attr:`closed` is set; a ``GreenletExit`` (the user stopping)
        ends it too, after marking the stream closed on purpose.
        """
        try:
            while not self.closed:
                started = time.perf_counter()
                try:
                    stream_once(self.resume_point)
                    error: BaseException = StreamEndedError("stream ended")
                except gevent.GreenletExit:
                    raise
                except Exception as exc:
                    error = exc
                if self.closed:
                    break
                if self.is_connected:
                    self.disconnected()
                    log.debug("%s stream ended: %r", self.name, error)
                else:
                    self.connect_failed(error, time.perf_counter() - started)
                    log.debug("%s connect failed: %r", self.name, error)
                hint = self._hint_s if self._hint_s is not None else self.sticky_hint_s
                self._hint_s = None
                delay = self.policy.next_delay(self.attempt, hint)
                self.attempt += 1
                if delay > 0:
                    sleep(delay)
        finally:
            self.disconnected(planned=True)

    def close(self) -> None:
        """Stop the loop after the current stream; the gauge is released."""
        self.closed = True
        self.disconnected(planned=True)


def open_socket(host: str, port: int, timeout: float, source: tuple[str, int] | None = None) -> Any:
    """A connected (gevent) TCP socket, bound to ``source`` if given and of the target's
    family (the port chosen at connect, see :mod:`.source_addresses`).

    IP literals skip name resolution: gevent resolves names in a small thread pool, fine for
    one connection, but a reconnect storm of thousands of clients to ``127.0.0.1`` would
    queue behind it and measure the resolver instead of the server.
    """
    from gevent import socket  # noqa: PLC0415 - this module stays importable without sockets

    source_family = None
    if source is not None:
        source_family = socket.AF_INET6 if ":" in source[0] else socket.AF_INET
    try:
        literal = ipaddress.ip_address(host)
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        targets = [(family, (host, port))]
    except ValueError:
        resolved = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        targets = [(info[0], info[4]) for info in resolved]
        # "localhost" may resolve to ::1 first: try the source's family first.
        targets.sort(key=lambda target: target[0] != source_family)
    error: OSError = OSError(f"{host}: no address to connect to")
    for family, address in targets:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            if source is not None and family == source_family:
                bind_source(sock, source)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error


def run_stream_user(user: Any, loop: Callable[[], None]) -> None:
    """Run a Locust user whose whole life is one stream, in the user's own greenlet.

    Replaces ``User.run`` for stream-only users (SSE, a WebSocket or gRPC feed subscriber
    with no tasks): no task loop, no second greenlet. That is what lets one worker hold tens
    of thousands of them: each costs one greenlet parked in a socket read. Waiting on the
    stream counts as "not in a task", so a stop takes effect at once.
    """
    user._state = LOCUST_STATE_WAITING
    try:
        user.on_start()
        loop()
    except (gevent.GreenletExit, StopUser, StopTest):
        user.on_stop()
