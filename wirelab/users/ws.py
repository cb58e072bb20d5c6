"""``WebSocketUser``: echo and ping round trips with ids, and the feed, on one WebSocket.

Built on websocket-client (sockets made cooperative by gevent, as Locust patches them): it
does the handshake and every send. Each user owns one connection, managed by a
:class:`~wirelab.users.stream.StreamSession` in its own receive greenlet: it connects (the
next URL of ``--ws-url`` each time), subscribes to the feed with ``since`` = the last seq
delivered, and reads every frame, in event-loop callbacks (:mod:`.socket_reader`, frames
split by :mod:`wirelab.ws_frames`; pongs and the close handshake go out from the greenlet):

- ``event`` / ``reset`` frames go to the session's checks (``ws deliver``);
- ``echo`` / ``pong`` replies wake the task waiting for that ``id``;
- a close with code 1001 (a draining server) carries ``{"reconnect_after_ms": N}`` in its
  reason: counted as a goaway and used as the hint of the ``server_hint`` policy. A round
  trip still waiting then is sent once more on the next connection, as an HTTP client
  retries an idempotent request that met a closing keep-alive connection: its latency runs
  from the first send, and the request series counts it as ``retried``.

The user's tasks send ``echo`` (``ws echo``) and app-level ``ping`` (``ws ping``) and wait
for the reply with the same id; a task that finds the connection down waits for the
reconnect up to ``request_timeout`` rather than failing at once. In the open model each start
is one ``ws echo`` on the user's connection (several in flight with ``--open-concurrency``).

With ``WIRELAB_TOKEN`` set, the token travels as the subprotocol ``bearer.<token>`` in the
handshake: never in the URL.
"""

from __future__ import annotations

import contextlib
import itertools
import ssl
import time
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

import gevent
import orjson
import websocket
from gevent.event import AsyncResult, Event
from locust import User, between, task

from ..ws_frames import FrameReader
from .open_model import OpenModelUser, report
from .options import payload_size, stop_test_on_bad_config, target_urls, token
from .socket_reader import IdleStreamError, SocketReader
from .source_addresses import source_addresses_for
from .stream import (
    GoAwayError,
    StreamEndedError,
    StreamSession,
    now_us,
    open_socket,
    run_stream_user,
    shared,
)
from .tls import client_context, stream_tls

__all__ = [
    "NotConnectedError",
    "SentAwayError",
    "WebSocketFeedUser",
    "WebSocketUser",
    "WebSocketUserBase",
]

#: Close code of a server that is going away (RFC 6455): reconnect, elsewhere if need be.
GOING_AWAY = 1001


class NotConnectedError(ConnectionError):
    """No open WebSocket within the request timeout (reconnecting)."""


class SentAwayError(NotConnectedError):
    """The server closed with 1001 (draining) before this request's reply came.

    A request sent as the close went out crossed it on the wire: the server may never have
    read it. ``round_trip`` sends it once more on the next connection.
    """


class ReplyMismatchError(ValueError):
    """The reply did not carry what was sent."""


class WebSocketUserBase(OpenModelUser, User):
    """The connection, the feed and the round trips, with no tasks (see ``RestUserBase``)."""

    abstract = True
    protocol: ClassVar[str] = "ws"
    #: Where the target address comes from (checked before users spawn).
    wirelab_target: ClassVar[tuple[str, str, str]] = ("ws_url", "ws_url", "ws")
    open_name: ClassVar[str] = "ws echo"
    wait_time = between(0.5, 1.5)

    #: Base URL(s); ``--ws-url``/``WIRELAB_WS_URL`` win, then this, then ``--host``.
    ws_url: ClassVar[str | None] = None
    ws_path: ClassVar[str] = "/ws"
    #: Offered subprotocols (``bearer.<token>`` is added when ``WIRELAB_TOKEN`` is set).
    subprotocols: ClassVar[list[str]] = ["wirelab.v1"]
    #: Subscribe to the feed on every connection.
    subscribe_feed: ClassVar[bool] = True
    #: First subscription's ``since``: ``None`` for live only, or a seq to replay after.
    start_since: ClassVar[int | None] = None
    echo_name: ClassVar[str] = "ws echo"
    ping_name: ClassVar[str] = "ws ping"
    stream_name: ClassVar[str] = "ws deliver"
    #: Reconnect policy spec (``--reconnect`` wins).
    reconnect: ClassVar[str | None] = None
    connect_timeout: ClassVar[float] = 10.0
    #: Seconds a task waits for its reply (and for a reconnect, if the socket is down).
    request_timeout: ClassVar[float] = 10.0
    #: No frame at all (the server pings every 15 s) for this long: a dead connection.
    read_timeout: ClassVar[float] = 45.0
    payload_size: ClassVar[int | None] = None
    #: Local addresses to connect from, rotated per connection; ``--source-addresses``
    #: wins. Unset, loopback targets spread over 127.0.0.0/8 (see
    #: :mod:`wirelab.users.source_addresses`).
    source_addresses: ClassVar[list[str] | None] = None
    #: Verify the server's certificate on wss URLs; ``False`` skips it for this class, as
    #: ``--tls-insecure`` does for all (self-signed labs only). ``--ca-file`` names the CA.
    verify_tls: ClassVar[bool] = True

    _user_counter: ClassVar[int] = 0

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        with stop_test_on_bad_config(self):
            self.urls = shared(target_urls(environment, "ws_url", self.ws_url, self.host, "ws"))
            self._tls = shared(
                stream_tls(
                    environment, self.urls, secure_scheme="wss://", insecure=not self.verify_tls
                )
            )
            # A source address list that cannot work stops the run here, not per connect.
            source_addresses_for(environment, "", self.source_addresses)
        self.session = StreamSession.for_user(self, self.stream_name)
        WebSocketUserBase._user_counter += 1
        self.session.start_at(WebSocketUserBase._user_counter)
        self.payload = shared("x" * payload_size(environment, self.payload_size))
        bearer = token()
        self._subprotocols = shared([*self.subprotocols, *([f"bearer.{bearer}"] if bearer else [])])
        self.ws: websocket.WebSocket | None = None
        # Set while connected; a feed subscriber, which nothing waits on, makes it on demand.
        self._ready: Event | None = None if self._feed_in_user_greenlet else Event()
        # Replies awaited by id; made by the first round trip (a feed subscriber has none).
        self._pending: dict[int, AsyncResult] | None = None
        self._ids: Iterator[int] | None = None
        self._receiver: gevent.Greenlet | None = None
        self._connection_state: _Connection | None = None

    # -- lifecycle ----------------------------------------------------------------------

    #: The connection loop runs in the user's own greenlet (feed subscribers only).
    _feed_in_user_greenlet: ClassVar[bool] = False

    def on_start(self) -> None:
        if not self._feed_in_user_greenlet:
            self._receiver = gevent.spawn(self.session.run_forever, self.connect_once)

    def on_stop(self) -> None:
        self.session.close()
        connection = self._connection_state
        if connection is not None:
            connection.reader.cancel()  # before the socket closes under it
        if self._receiver is not None:
            self._receiver.kill(block=False)
            self._receiver = None
        ws, self.ws = self.ws, None
        if ws is not None:
            ws.shutdown()

    # -- the connection (runs in the receive greenlet) ------------------------------------

    def _open_socket(self, url: str) -> Any:
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        sources = source_addresses_for(self.environment, host, self.source_addresses)
        source = sources.next() if sources is not None else None
        tls = parts.scheme == "wss"
        sock = open_socket(host, parts.port or (443 if tls else 80), self.connect_timeout, source)
        if not tls:
            return sock
        # TLS here, with the shared context (websocket-client uses a socket it is given
        # as it is): the same verification as every other user, and source addresses work.
        try:
            return self.tls_context().wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise

    def tls_context(self) -> ssl.SSLContext:
        """The process's shared client TLS context for this user's setting (see
        :mod:`wirelab.users.tls`)."""
        return client_context(self._tls)

    def connect_once(self, since: int | None) -> None:
        """Connect, subscribe after ``since``, and read frames until the connection ends."""
        session = self.session
        url = session.next_url(self.urls) + self.ws_path
        # Only a user with tasks sends from two greenlets (its tasks, and pongs from here).
        ws = websocket.WebSocket(
            enable_multithread=not self._feed_in_user_greenlet, skip_utf8_validation=True
        )
        started = time.perf_counter()
        try:
            ws.connect(
                url,
                timeout=self.connect_timeout,
                subprotocols=self._subprotocols,
                socket=self._open_socket(url),
            )
        except websocket.WebSocketException as exc:
            ws.shutdown()
            raise ConnectionError(f"handshake failed: {exc}") from exc
        except BaseException:
            ws.shutdown()
            raise
        session.connected(time.perf_counter() - started)
        ws.handshake_response = None  # its headers, kept for the connection's life otherwise
        connection = None
        try:
            ws.settimeout(self.read_timeout)  # for sends; reads are the reader's
            if self.subscribe_feed:
                ws.send(
                    orjson.dumps({"type": "subscribe", "since": since}), websocket.ABNF.OPCODE_TEXT
                )
            self.ws = ws
            if self._ready is not None:
                self._ready.set()
            connection = self._connection_state = _Connection(self, ws)
            try:
                connection.reader.run(self.read_timeout)
            except IdleStreamError:
                raise ConnectionError(f"no frame for {self.read_timeout:g}s") from None
            raise StreamEndedError("connection closed without a close frame")
        finally:
            if self._connection_state is connection:
                self._connection_state = None
            if self._ready is not None:
                self._ready.clear()
            if self.ws is ws:
                self.ws = None
            self._fail_pending(
                SentAwayError("the server went away (1001) before replying")
                if connection is not None and connection.sent_away
                else NotConnectedError("connection closed while waiting for the reply")
            )
            ws.shutdown()

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, None
        for waiter in (pending or {}).values():
            waiter.set_exception(error)

    # -- request/response -------------------------------------------------------------

    def _connection(self) -> websocket.WebSocket:
        ws = self.ws
        if ws is None:
            if self._ready is None:
                self._ready = Event()
            self._ready.wait(self.request_timeout)
            ws = self.ws
            if ws is None:
                raise NotConnectedError(f"not connected after {self.request_timeout:g}s")
        return ws

    def round_trip(
        self,
        kind: str,
        name: str,
        extra: dict[str, Any],
        intended: float | None = None,
        *,
        idempotent: bool = True,
    ) -> dict[str, Any] | None:
        """Send ``{"type": kind, "id", "ts", **extra}``, wait for the reply with that id.

        An ``idempotent`` request cut by the server's going away (1001) is sent once more on
        the next connection; its latency counts from the first send.
        """
        sent = time.perf_counter()
        reply = None
        error: Exception | None = None
        retried = False
        while True:
            try:
                ws = self._connection()
                if not retried:
                    sent = time.perf_counter()  # the wait for a reconnect is not the reply's
                reply = self._send_and_wait(ws, kind, extra)
            except SentAwayError as exc:
                if idempotent and not retried:
                    retried = True
                    continue
                error = exc
            except gevent.Timeout:
                error = TimeoutError(f"no {kind} reply within {self.request_timeout:g}s")
            except (websocket.WebSocketException, OSError, ReplyMismatchError) as exc:
                error = exc
            break
        done = time.perf_counter()
        length = 0
        if reply is not None:
            length = len(reply.get("payload") or "")
            if extra.get("payload") is not None and reply.get("payload") != extra["payload"]:
                error = ReplyMismatchError(f"{kind} reply payload differs from the request")
        report(
            self.environment, self.protocol, name, sent=sent, done=done, intended=intended,
            length=length, exception=error, context={"retried": True} if retried else None,
        )  # fmt: skip
        return reply if error is None else None

    def _send_and_wait(
        self, ws: websocket.WebSocket, kind: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        """One attempt on ``ws``: send with a fresh id, wait for the reply with that id."""
        if self._ids is None:
            self._ids = itertools.count(1)
        message_id = next(self._ids)
        waiter = AsyncResult()
        if self._pending is None:
            self._pending = {}
        self._pending[message_id] = waiter
        try:
            ws.send(
                orjson.dumps({"type": kind, "id": message_id, "ts": now_us(), **extra}),
                websocket.ABNF.OPCODE_TEXT,
            )
            return waiter.get(timeout=self.request_timeout)
        finally:
            if self._pending is not None:
                self._pending.pop(message_id, None)

    def echo(self, intended: float | None = None) -> dict[str, Any] | None:
        """One ``echo`` round trip with this user's payload."""
        return self.round_trip("echo", self.echo_name, {"payload": self.payload}, intended)

    def ping(self, intended: float | None = None) -> dict[str, Any] | None:
        """One application-level ``ping`` -> ``pong``."""
        return self.round_trip("ping", self.ping_name, {}, intended)

    def open_operation(self, intended: float) -> None:
        self.echo(intended)


class _Connection(FrameReader):
    """One open WebSocket of a user: what each incoming frame does (in the event loop)."""

    __slots__ = ("_session", "_user", "_ws", "reader", "sent_away")

    def __init__(self, user: WebSocketUserBase, ws: websocket.WebSocket) -> None:
        super().__init__(ws)
        self._user = user
        self._session = user.session
        self._ws = ws
        self.reader = SocketReader(ws.sock, self.feed)
        #: The server closed with 1001: a reply still awaited may be asked for again.
        self.sent_away = False

    def on_message(self, data: bytes) -> None:
        message = orjson.loads(data)
        kind = message.get("type")
        if kind == "event":
            self._session.event(message["seq"], message["ts"], len(data))
        elif kind in ("echo", "pong"):
            pending = self._user._pending
            waiter = pending.pop(message.get("id"), None) if pending else None
            if waiter is not None:
                waiter.set(message)
        elif kind == "reset":
            self._session.reset(int(message["since"]), int(message["first"]))
        elif kind == "subscribed":
            self._session.anchor(int(message.get("since") or 0))
        elif kind == "error":
            pending = self._user._pending
            waiter = pending.pop(message.get("id"), None) if pending else None
            if waiter is not None:
                waiter.set_exception(ReplyMismatchError(message.get("message", "error")))

    def on_control(self, opcode: int, data: bytes) -> None:
        # Replies go out from the connection's greenlet: the event loop must not block.
        if opcode == websocket.ABNF.OPCODE_PING:
            ws = self._ws
            self.reader.defer(lambda: ws.pong(data))
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            self.reader.defer(lambda: self._closed(data))

    def _closed(self, data: bytes) -> None:
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self._ws.send_close()
        code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
        if code != GOING_AWAY:
            raise StreamEndedError(f"closed by the server with code {code}")
        self.sent_away = True
        hint_ms = None
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            hint_ms = orjson.loads(data[2:]).get("reconnect_after_ms")
        self._session.goaway(None if hint_ms is None else hint_ms / 1000)
        raise GoAwayError("server is going away (1001)")


class WebSocketUser(WebSocketUserBase):
    """Echo (``ws echo``), ping (``ws ping``) and the feed (``ws deliver``) on one socket."""

    abstract = True

    @task(3)
    def echo_task(self) -> None:
        self.echo()

    @task(1)
    def ping_task(self) -> None:
        self.ping()


class WebSocketFeedUser(WebSocketUserBase):
    """Subscribes to the feed and only reads it (``ws deliver``): a dashboard-like client.

    Its connection loop runs in the user's own greenlet, without Locust's task loop: the
    cheapest connection a worker can hold, for connection-count and storm scenarios.
    """

    abstract = True
    _feed_in_user_greenlet: ClassVar[bool] = True

    def run(self) -> None:
        run_stream_user(self, self.feed)

    @task
    def feed(self) -> None:
        """Read the feed forever (what :meth:`run` does; a task so Locust lists one)."""
        self.session.run_forever(self.connect_once)
