"""The WebSocket target: echo/RPC, app-level ping and the resumable feed on ``/ws``.

Built on the ``websockets`` asyncio server. The message contract lives in
:mod:`.ws_messages`; this module is the server: HTTP health on the same port, handshake
auth, one session per connection, and the drain that sends every client away with close
code 1001 and a jittered reconnect hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHeader
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from .base import Target, TargetSettings
from .feed.base import Feed, Subscription
from .feed.event import Event, now_us
from .http.server import set_send_buffer
from .tls import server_ssl_context
from .ws_messages import (
    AUTH_TIMEOUT_S,
    AUTHENTICATED,
    SUBPROTOCOL,
    UNSUBSCRIBED,
    FrameCache,
    InvalidSinceError,
    ProtocolViolationError,
    bearer_token,
    credentials_in_query,
    describe_type,
    echo_reply,
    error_reply,
    error_response,
    going_away_reason,
    json_response,
    parse_message,
    parse_since,
    pong_reply,
    subscribed_reply,
    tokens_match,
)

log = logging.getLogger(__name__)

#: The one path that upgrades to a WebSocket.
WS_PATH = "/ws"
#: Events taken from the feed per wake-up: bounds the time one connection holds the loop.
BATCH = 256
#: How long a closing handshake may wait for the client before the socket is cut.
CLOSE_TIMEOUT_S = 5.0

# At DEBUG the library logs every handshake header, including the bearer subprotocol,
# and "connection open/closed" at INFO for every client: keep it to warnings and errors.
_library_log = logging.getLogger(f"{__name__}.websockets")
_library_log.setLevel(logging.WARNING)


class WsConnection(ServerConnection):
    """A server connection that remembers whether its handshake already authenticated it."""

    authenticated: bool = False


class WebSocketTarget(Target):
    """Serves ``/ws`` (JSON text frames, see :mod:`.ws_messages`) plus ``/healthz``, ``/readyz``.

    Counters (read by the metrics exporter): ``accepted`` connections, ``active`` ones,
    ``messages_in`` and ``messages_out`` frames, ``resumes`` (subscribes with a ``since``)
    and ``replayed`` events (sent from before the head at subscribe time).
    """

    protocol = "ws"

    def __init__(self, feed: Feed, settings: TargetSettings) -> None:
        super().__init__(feed, settings)
        self.accepted = 0
        self.active = 0
        self.messages_in = 0
        self.messages_out = 0
        self.resumes = 0
        self.replayed = 0
        #: Handshakes refused at the connection limit (close 1013), streams cut for not reading.
        self.refused = 0
        self.stalled = 0
        #: Echo requests read (the ``--test-away-every`` hook counts them).
        self.echoes = 0
        #: Wire frames of recent events, shared by every connection of this target.
        self.frame_cache = FrameCache()
        self._server: Server | None = None
        self._connections: set[WsConnection] = set()
        self._going_away = False
        # Strong references: the loop only keeps weak ones to tasks.
        self._closing: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> int:
        heartbeat = self.settings.heartbeat if self.settings.heartbeat > 0 else None
        self._server = await serve(
            self._handle,
            self.settings.host,
            self.settings.port,
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,
            create_connection=WsConnection,
            # permessage-deflate costs CPU per client and hides the bytes on the wire.
            compression=None,
            max_size=self.settings.max_message_bytes,
            # Protocol pings find zombie connections (peer gone without a FIN).
            ping_interval=heartbeat,
            ping_timeout=2 * heartbeat if heartbeat else None,
            close_timeout=CLOSE_TIMEOUT_S,
            logger=_library_log,
            ssl=server_ssl_context(self.settings.tls_cert, self.settings.tls_key),
            # Passed on to loop.create_server: the default backlog there is 100, which a
            # reconnect storm overflows in a millisecond.
            backlog=self.settings.listen_backlog,
            reuse_port=self.settings.reuse_port or None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop_accepting(self) -> None:
        """Close the listener, then close every connection with 1001 and its own hint."""
        self._going_away = True
        self.end_subscriptions()
        if self._server is None:
            return
        # Without close_connections the library closes only the listener (and turns away
        # handshakes in progress with 503); each open connection gets its own jittered
        # hint below, so that clients do not all come back in the same instant.
        self._server.close(close_connections=False)
        # The close runs in a task; one loop turn lets it shut the listening socket now.
        await asyncio.sleep(0)
        for ws in list(self._connections):
            self.send_away(ws)

    async def wait_closed(self, timeout: float) -> bool:
        """Wait for every handler to finish; abort the connections left at ``timeout``."""
        server = self._server
        if server is None:
            return True
        server.close(close_connections=False)
        try:
            async with asyncio.timeout(timeout):
                await server.wait_closed()
            return True
        except TimeoutError:
            pass
        for ws in list(self._connections):
            ws.transport.abort()
        try:
            async with asyncio.timeout(1.0):
                await server.wait_closed()
        except TimeoutError:
            for task in list(server.handler_tasks):
                task.cancel()
        return False

    async def drop_connections(self) -> int:
        """Reset every open WebSocket (no close frame): clients see the connection die."""
        self.drops += 1
        connections = list(self._connections)
        for ws in connections:
            ws.transport.abort()
        return len(connections)

    def stats(self) -> dict[str, object]:
        return {
            **super().stats(),
            "accepted_connections": self.accepted,
            "active_connections": self.active,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "requests": self.messages_in,
            "resumes": self.resumes,
            "replayed": self.replayed,
            "refused_connections": self.refused,
            "stalled_streams": self.stalled,
        }

    def send_away(self, ws: WsConnection) -> None:
        """Close ``ws`` with 1001 and a jittered reconnect hint, in a task of its own."""
        reason = going_away_reason(self.settings.reconnect_hint_ms())
        task = asyncio.create_task(ws.close(CloseCode.GOING_AWAY, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- HTTP, before any upgrade ----------------------------------------------------

    def _process_request(self, connection: WsConnection, request: Request) -> Response | None:
        """Answer health probes and refuse bad handshakes; ``None`` lets the upgrade go on."""
        path, _, query = request.path.partition("?")
        if path == WS_PATH:
            return self._authorize_handshake(connection, request, query)
        if path == "/healthz":
            return json_response(HTTPStatus.OK, {"status": "ok", "protocol": self.protocol})
        if path == "/readyz":
            if self.ready:
                return json_response(HTTPStatus.OK, {"status": "ready"})
            state = "draining" if self.draining else "starting"
            return json_response(HTTPStatus.SERVICE_UNAVAILABLE, {"status": state})
        return error_response(HTTPStatus.NOT_FOUND, "not_found", f"no route for {path[:100]}")

    def _authorize_handshake(
        self, connection: WsConnection, request: Request, query: str
    ) -> Response | None:
        # A URL ends up in proxy and access logs: credentials there are refused outright,
        # even when this server has no token to check.
        if credentials_in_query(query):
            return error_response(
                HTTPStatus.BAD_REQUEST,
                "credentials_in_url",
                "credentials are not accepted in the URL; use the bearer.<token> "
                "subprotocol or an auth frame",
            )
        token = self.settings.token
        if token is None:
            connection.authenticated = True
            return None
        try:
            presented = bearer_token(request.headers)
        except InvalidHeader:
            return None  # the library's own handshake check answers 400
        if presented is None:
            return None  # may still authenticate with its first frame
        if not tokens_match(presented, token):
            return error_response(
                HTTPStatus.UNAUTHORIZED,
                "unauthorized",
                "invalid bearer token",
                [("WWW-Authenticate", 'Bearer realm="wirelab"')],
            )
        connection.authenticated = True
        return None

    # -- one connection ----------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, WsConnection)
        if self.active >= self.settings.max_connections:
            # 1013 Try Again Later: a clear refusal the client's reconnect policy understands.
            self.refused += 1
            await ws.close(CloseCode.TRY_AGAIN_LATER, "connection limit reached; retry later")
            return
        if self.settings.socket_send_buffer:
            set_send_buffer(ws.transport, self.settings.socket_send_buffer)
        self.accepted += 1
        self.accepts.record()
        self.active += 1
        self._connections.add(ws)
        try:
            if self._going_away:
                # Opened just as the drain began, after the others were sent away.
                self.send_away(ws)
                await ws.wait_closed()
                return
            await _Session(self, ws).run()
        finally:
            self._connections.discard(ws)
            self.active -= 1


class _Session:
    """One connection's conversation: its requests in order, and at most one feed stream."""

    __slots__ = ("stream", "subscription", "target", "ws")

    def __init__(self, target: WebSocketTarget, ws: WsConnection) -> None:
        self.target = target
        self.ws = ws
        self.subscription: Subscription | None = None
        self.stream: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            if not self.ws.authenticated and not await self._authenticate():
                return
            async for frame in self.ws:
                self.target.messages_in += 1
                try:
                    message = parse_message(frame)
                except ProtocolViolationError as exc:
                    await self.ws.close(exc.code, exc.reason)
                    return
                await self._dispatch(message)
        except ConnectionClosed:
            pass  # the client left, a frame was too big, or the drain closed it
        finally:
            await self._stop_stream()

    async def send(self, frame: bytes) -> None:
        # text=True sends the UTF-8 JSON bytes as a text frame without decoding them.
        await self.ws.send(frame, text=True)
        self.target.messages_out += 1

    async def _authenticate(self) -> bool:
        """The first frame must be a valid auth frame, within ``AUTH_TIMEOUT_S``."""
        try:
            async with asyncio.timeout(AUTH_TIMEOUT_S):
                frame = await self.ws.recv()
        except TimeoutError:
            await self.ws.close(CloseCode.POLICY_VIOLATION, "authentication timeout")
            return False
        self.target.messages_in += 1
        try:
            message = parse_message(frame)
        except ProtocolViolationError as exc:
            await self.ws.close(exc.code, exc.reason)
            return False
        if message.get("type") != "auth":
            await self.ws.close(CloseCode.POLICY_VIOLATION, "authentication required")
            return False
        return await self._auth(message)

    async def _auth(self, message: dict[str, Any]) -> bool:
        token = self.target.settings.token
        if token is not None and not tokens_match(message.get("token"), token):
            await self.ws.close(CloseCode.POLICY_VIOLATION, "authentication failed")
            return False
        await self.send(AUTHENTICATED)
        return True

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "echo":
            target = self.target
            target.echoes += 1
            every = target.settings.test_away_every
            if every and target.echoes % every == 0:
                target.send_away(self.ws)  # TEST HOOK: as if this echo crossed a drain's close
                return
            await self.send(echo_reply(message, now_us()))
        elif kind == "ping":
            await self.send(pong_reply(message, now_us()))
        elif kind == "subscribe":
            await self._subscribe(message)
        elif kind == "unsubscribe":
            await self._stop_stream()
            await self.send(UNSUBSCRIBED)
        elif kind == "auth":
            await self._auth(message)
        else:
            await self.send(
                error_reply("unknown_type", f"unknown message type {describe_type(kind)}")
            )

    async def _subscribe(self, message: dict[str, Any]) -> None:
        try:
            since = parse_since(message)
        except InvalidSinceError as exc:
            await self.send(error_reply("invalid_since", str(exc)))
            return
        # A second subscribe replaces the first; events of the old one that are already
        # written precede the "subscribed" reply, which marks where the new one starts.
        await self._stop_stream()
        target = self.target
        subscription = target.open_subscription(since)
        self.subscription = subscription
        head = target.feed.head
        if since is not None:
            target.resumes += 1
        await self.send(subscribed_reply(subscription.cursor, head))
        self.stream = asyncio.create_task(self._stream(subscription, head))

    async def _stream(self, subscription: Subscription, replay_until: int) -> None:
        """Send the feed to the client, one socket write per batch, waiting for TCP.

        This is the fan-out hot path, so it writes frames itself instead of calling
        ``ws.send`` per event: the library frames every message for every connection and
        writes each one separately (one syscall each, which measured as most of the CPU),
        while here a frame is built once per event for all connections and a batch goes
        out in one write. A client that reads slowly gets bigger batches, not more writes.

        Waiting on ``drain`` keeps memory bounded: a slow reader queues nothing here, it
        stays behind in the feed (the cache, then the log, then a reset).
        """
        target = self.target
        ws = self.ws
        transport = ws.transport
        frame = target.frame_cache.frame
        try:
            while True:
                before = subscription.cursor
                batch = await subscription.next_batch(BATCH)
                if not batch:
                    return  # the subscription was ended: the target is draining
                if ws.protocol.state is not State.OPEN or transport.is_closing():
                    return  # closing: the handler sees it on its next receive
                transport.write(b"".join([frame(item) for item in batch]))
                target.messages_out += len(batch)
                if before < replay_until:
                    target.replayed += sum(
                        1 for item in batch if isinstance(item, Event) and item.seq <= replay_until
                    )
                try:
                    async with asyncio.timeout(target.settings.send_stall_timeout):
                        await ws.drain()
                except TimeoutError:
                    # The client stopped reading: the kernel and transport buffers are full
                    # and nothing more is queued here. Cut it (1008, then an abort after
                    # CLOSE_TIMEOUT_S if the close frame cannot get through either); it
                    # resumes from the feed's log when it comes back.
                    target.stalled += 1
                    log.info("closing stalled ws stream: send buffer full")
                    self._close_later(CloseCode.POLICY_VIOLATION, "slow consumer: not reading")
                    return
        except (ConnectionClosed, OSError):
            pass
        except Exception as exc:
            # The feed's log failed (Redis gone): say so, and let the client resume elsewhere.
            log.warning("ws feed stream failed, closing with 1011: %r", exc)
            with contextlib.suppress(ConnectionClosed):
                await ws.close(CloseCode.INTERNAL_ERROR, "feed unavailable")
        finally:
            target.release_subscription(subscription)

    def _close_later(self, code: int, reason: str) -> None:
        task = asyncio.create_task(self.ws.close(code, reason))
        self.target._closing.add(task)
        task.add_done_callback(self.target._closing.discard)

    async def _stop_stream(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.cancel()
            # wait() rather than awaiting the task: the task's CancelledError is not ours.
            await asyncio.wait({stream})
        if self.subscription is not None:
            # The task may have been cancelled before it ever ran its own cleanup.
            self.target.release_subscription(self.subscription)
            self.subscription = None


def _select_subprotocol(
    connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    # Only wirelab.v1 is ever selected: echoing bearer.<token> would put it in a response.
    return Subprotocol(SUBPROTOCOL) if SUBPROTOCOL in offered else None
