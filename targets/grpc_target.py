"""The gRPC target: service ``wirelab.v1.Lab`` (Echo, Subscribe, Chat) on ``grpc.aio``.

``Echo`` is the request/response primitive and honours deadlines. ``Subscribe`` serves the
feed as a server stream, resumable with ``since`` and kept alive with heartbeats. ``Chat``
answers every message of a bidi stream in order. Health is the standard ``grpc.health.v1``
service, NOT_SERVING from the moment draining starts.

Draining: every Subscribe stream gets a ``GoAway`` with a jittered reconnect hint and ends
with UNAVAILABLE (the status gRPC clients retry elsewhere), Chat streams end with UNAVAILABLE,
and ``server.stop(grace)`` sends HTTP/2 GOAWAY while unary calls in flight finish.

Runs on any asyncio loop, uvloop included (the runner's): ``grpc.aio`` talks to its C core
through a completion-queue poller thread that wakes the loop with ``add_reader`` on a socket,
which uvloop implements like the default loop does.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .base import Target, TargetSettings
from .feed.base import Feed, Subscription
from .feed.event import Event, Reset, now_us
from .proto import wirelab_pb2 as pb
from .tls import grpc_server_credentials

log = logging.getLogger(__name__)

#: Fully qualified service name, as clients and health checks spell it.
SERVICE = pb.DESCRIPTOR.services_by_name["Lab"].full_name
#: Ceiling of Echo's ``delay_ms`` test hook: a typo must not park a call for hours.
MAX_DELAY_MS = 60_000
DRAINING_DETAILS = "server draining; reconnect"

_SERVING = health_pb2.HealthCheckResponse.SERVING


class GrpcTarget(Target):
    """``wirelab.v1.Lab`` plus ``grpc.health.v1`` on one ``grpc.aio`` server."""

    protocol = "grpc"

    def __init__(self, feed: Feed, settings: TargetSettings) -> None:
        super().__init__(feed, settings)
        #: Lab calls that reached a handler (auth passed, message within limits).
        self.accepted_calls = 0
        #: Subscribe and Chat streams open right now.
        self.active_streams = 0
        #: Echo calls being served right now; a cancelled call leaves at once.
        self.active_calls = 0
        #: Subscribe calls that asked for a ``since`` (a resume, or a replay from the start).
        self.resumes = 0
        #: Events sent from the log that were published before their stream subscribed.
        self.replayed = 0
        #: Subscribe and Chat streams opened (the "connections" of the accept log).
        self.streams_opened = 0
        #: Calls per method that reached a handler.
        self.calls: dict[str, int] = {"Echo": 0, "Subscribe": 0, "Chat": 0}
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._encoded = EncodedEvents()
        #: Set by stop_accepting(): streams say goodbye, new streams are sent away at once.
        self._stopping = False
        #: One future per open Chat stream, resolved when the server drains.
        self._chat_wakeups: set[asyncio.Future[None]] = set()
        self._drain_started: float | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stop_task: asyncio.Task[None] | None = None
        #: Loop time at which the graceful stop gives up and cancels the calls left.
        self._stop_deadline = 0.0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> int:
        port = await self._serve(self.settings.port)
        self.port = port
        return port

    async def _serve(self, port: int) -> int:
        """Build, bind and start a server (with health SERVING) on ``port``; 0 picks one."""
        settings = self.settings
        interceptors = [BearerTokenAuth(settings.token, SERVICE)] if settings.token else []
        server = grpc.aio.server(
            interceptors=interceptors,
            options=server_options(settings),
            # Calls beyond this fail at once with RESOURCE_EXHAUSTED instead of queueing.
            maximum_concurrent_rpcs=settings.max_connections,
        )
        handlers = self._method_handlers()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        # Registered methods are matched in C core by path instead of a Python lookup.
        server.add_registered_method_handlers(SERVICE, handlers)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)

        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        address = f"{host}:{port}"
        try:
            if settings.tls_cert and settings.tls_key:
                credentials = grpc_server_credentials(settings.tls_cert, settings.tls_key)
                bound = server.add_secure_port(address, credentials)
            else:
                bound = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio raises on bind failure; older versions return 0
            raise OSError(f"grpc target cannot listen on {address}: {exc}") from exc
        if bound == 0:
            raise OSError(f"grpc target cannot listen on {address}")
        await server.start()
        self._server = server
        for service in ("", SERVICE):
            await self._health.set(service, _SERVING)
        return bound

    async def drop_connections(self) -> int:
        """Cut every connection: stop the server with no grace, then serve again at once.

        ``grpc.aio`` has no API to reset one connection, so the whole server goes: every
        call is cancelled and every HTTP/2 connection closed in the same instant, which is
        what a network blip looks like to the clients. A new server binds the same port
        right after (tens of ms on loopback), so clients that come back find it; the few
        that try in between are refused and count as failed connects, as in a real blip.
        Ignored while draining: the process is going away anyway.
        """
        server = self._server
        if server is None or self._stop_task is not None or self.draining:
            return 0
        self.drops += 1
        cut = self.active_streams + self.active_calls
        self._server = None
        await server.stop(0)
        await server.wait_for_termination(5.0)
        self._server = None
        await self._serve(self.port)
        return cut

    def stats(self) -> dict[str, object]:
        """``accepted_connections``/``active_connections`` count Subscribe and Chat streams:
        gRPC multiplexes calls over connections it does not expose, and a stream is what a
        client re-opens after a drain or a blip."""
        return {
            **super().stats(),
            "accepted_connections": self.streams_opened,
            "active_connections": self.active_streams,
            "active_calls": self.active_calls,
            "accepted_calls": self.accepted_calls,
            "requests": dict(self.calls),
            "resumes": self.resumes,
            "replayed": self.replayed,
        }

    def mark_draining(self) -> None:
        """Readiness false at once: both health entries turn NOT_SERVING (Check and Watch)."""
        super().mark_draining()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._drain_started = loop.time()
        if self._health is not None:
            # The servicer's API is a coroutine; with no Watch streams open it completes in
            # its first step, i.e. before the loop serves another Check.
            self._spawn(self._health.enter_graceful_shutdown())

    async def stop_accepting(self) -> None:
        loop = asyncio.get_running_loop()
        if self._health is not None:
            await self._health.enter_graceful_shutdown()  # a no-op after mark_draining
        self._stopping = True
        streams = self.active_streams
        self.end_subscriptions()  # each Subscribe wakes, sends GoAway, ends UNAVAILABLE
        for wakeup in self._chat_wakeups:
            if not wakeup.done():
                wakeup.set_result(None)
        if self._server is None or self._stop_task is not None:
            return
        started = self._drain_started if self._drain_started is not None else loop.time()
        remaining = max(0.0, started + self.settings.grace - loop.time())
        log.info("grpc draining", extra={"streams": streams, "grace_s": round(remaining, 3)})
        # Graceful stop: the listener closes, HTTP/2 GOAWAY goes to every connection, calls
        # in flight may finish until ``remaining`` runs out; then core cancels the rest.
        self._stop_deadline = loop.time() + remaining
        self._stop_task = loop.create_task(self._server.stop(remaining), name="grpc stop")

    async def wait_closed(self, timeout: float) -> bool:
        server = self._server
        if server is None:
            return True
        if self._stop_task is None:
            await self.stop_accepting()
        # wait_for_termination() returns True when the timeout passed first.
        timed_out = await server.wait_for_termination(max(0.0, timeout))
        if timed_out:
            await server.stop(None)  # cancel whatever is left, now
        if self._stop_task is not None:
            await self._stop_task
        # Core reports "terminated" after cancelling leftovers too: finishing before the
        # graceful stop's own deadline is what tells a clean stop from a forced one.
        return not timed_out and asyncio.get_running_loop().time() < self._stop_deadline

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the service -----------------------------------------------------------------

    def _method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "Echo": grpc.unary_unary_rpc_method_handler(
                self.echo,
                request_deserializer=pb.EchoRequest.FromString,
                response_serializer=pb.EchoReply.SerializeToString,
            ),
            # No serializer: Subscribe writes FeedMessage bytes that are encoded once per
            # event and shared by every stream (see EncodedEvents).
            "Subscribe": grpc.unary_stream_rpc_method_handler(
                self.subscribe,
                request_deserializer=pb.SubscribeRequest.FromString,
                response_serializer=None,
            ),
            "Chat": grpc.stream_stream_rpc_method_handler(
                self.chat,
                request_deserializer=pb.ChatMessage.FromString,
                response_serializer=pb.ChatMessage.SerializeToString,
            ),
        }

    async def echo(
        self, request: pb.EchoRequest, context: grpc.aio.ServicerContext
    ) -> pb.EchoReply:
        """Return the request with ``server_ts``, after the ``delay_ms`` test hook if any."""
        self.accepted_calls += 1
        self.calls["Echo"] += 1
        self.active_calls += 1
        try:
            if request.delay_ms:
                await self._delay(request.delay_ms, context)
            return pb.EchoReply(
                id=request.id, ts=request.ts, server_ts=now_us(), payload=request.payload
            )
        finally:
            self.active_calls -= 1

    async def _delay(self, delay_ms: int, context: grpc.aio.ServicerContext) -> None:
        delay = min(delay_ms, MAX_DELAY_MS) / 1000
        remaining = context.time_remaining()
        if remaining is not None and delay >= remaining:
            # Fail now rather than sleep into a deadline the client has already given up on.
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"delay_ms={delay_ms} exceeds the call's remaining {remaining * 1000:.0f} ms",
            )
        # A cancelled call (client gone, deadline passed) cancels this task, and with it the
        # sleep: no work goes on for a caller that has left.
        await asyncio.sleep(delay)

    async def subscribe(
        self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> None:
        """Replay after ``since``, then live; heartbeats when idle; GoAway when draining."""
        self.accepted_calls += 1
        self.calls["Subscribe"] += 1
        since = request.since if request.HasField("since") else None
        if since is not None and since < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "since must be >= 0")
        if self._stopping:
            await self._go_away(context)
            return
        subscription = self.open_subscription(since)
        if since is not None:
            self.resumes += 1
        self.streams_opened += 1
        self.accepts.record()
        self.active_streams += 1
        try:
            # Headers now: the client knows it is subscribed before the first event.
            await context.send_initial_metadata(())
            await self._stream_feed(subscription, context, since)
        finally:
            self.active_streams -= 1
            self.release_subscription(subscription)
        if self._stopping:
            await self._go_away(context)

    async def _stream_feed(
        self, subscription: Subscription, context: grpc.aio.ServicerContext, since: int | None
    ) -> None:
        write = context.write
        encode = self._encoded.get
        heartbeat = self.settings.heartbeat
        # Events up to the head at subscribe time come from the log: they count as replayed.
        replay_until = self.feed.head if since is not None and since < self.feed.head else 0
        while True:
            batch = await subscription.next_batch(timeout=heartbeat)
            if not batch:
                if subscription.closed:
                    return
                await write(encode_heartbeat())
                continue
            for item in batch:
                if type(item) is Event:
                    await write(encode(item))
                else:
                    await write(encode_reset(item))
            if replay_until:
                replay_until = self._count_replayed(batch, replay_until)

    def _count_replayed(self, batch: list[Event | Reset], replay_until: int) -> int:
        """Count the batch's events up to ``replay_until``; return 0 once replay is over."""
        seqs = [item.seq for item in batch if type(item) is Event]
        if not seqs:
            return replay_until
        self.replayed += max(0, min(seqs[-1], replay_until) - seqs[0] + 1)
        return 0 if seqs[-1] >= replay_until else replay_until

    async def _go_away(self, context: grpc.aio.ServicerContext) -> None:
        """Tell a Subscribe client when to come back, then end with UNAVAILABLE."""
        goaway = pb.GoAway(reconnect_after_ms=self.settings.reconnect_hint_ms(), reason="draining")
        await context.write(pb.FeedMessage(goaway=goaway).SerializeToString())
        context.set_code(grpc.StatusCode.UNAVAILABLE)
        context.set_details(DRAINING_DETAILS)

    async def chat(
        self, requests: AsyncIterator[pb.ChatMessage], context: grpc.aio.ServicerContext
    ) -> None:
        """Answer each message in order; end with UNAVAILABLE when the server drains."""
        self.accepted_calls += 1
        self.calls["Chat"] += 1
        if self._stopping:
            await context.abort(grpc.StatusCode.UNAVAILABLE, DRAINING_DETAILS)
        self.streams_opened += 1
        self.accepts.record()
        # The answering loop runs as its own task so that this one can wait for "draining"
        # without racing every read against it (no per-message task, no per-message wait).
        answering = asyncio.ensure_future(_answer_chat(requests, context))
        wakeup: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chat_wakeups.add(wakeup)
        self.active_streams += 1
        try:
            await asyncio.wait((answering, wakeup), return_when=asyncio.FIRST_COMPLETED)
            if answering.done():
                answering.result()  # the client half-closed: status OK (or the loop's error)
                return
            await context.abort(grpc.StatusCode.UNAVAILABLE, DRAINING_DETAILS)
        finally:
            self.active_streams -= 1
            self._chat_wakeups.discard(wakeup)
            if not answering.done():
                # Once the call has ended (aborted here, or cancelled by the client), the
                # answering task's pending read returns and it exits by itself: it is never
                # cancelled in the middle of a core operation.
                answering.add_done_callback(_discard_result)


async def _answer_chat(
    requests: AsyncIterator[pb.ChatMessage], context: grpc.aio.ServicerContext
) -> None:
    write = context.write
    message_class = pb.ChatMessage
    async for message in requests:
        await write(
            message_class(id=message.id, ts=message.ts, text=message.text, server_ts=now_us())
        )


def _discard_result(task: asyncio.Future[Any]) -> None:
    # The call is over (drained or cancelled); its answering loop's outcome no longer matters.
    if not task.cancelled():
        task.exception()


# -- encoding ------------------------------------------------------------------------------


class EncodedEvents:
    """``FeedMessage`` bytes per event, shared by all streams: each event is encoded once.

    Keyed by seq and checked against ``ts``, because a Redis feed hands each replay its own
    ``Event`` objects (and a feed that restarted reuses seqs). Bounded by bytes, not entries,
    since event payloads can be large.
    """

    __slots__ = ("_cache", "_size", "budget")

    def __init__(self, budget: int = 16 * 1024 * 1024) -> None:
        self._cache: OrderedDict[int, tuple[int, bytes]] = OrderedDict()
        self._size = 0
        self.budget = budget

    def get(self, event: Event) -> bytes:
        hit = self._cache.get(event.seq)
        if hit is not None and hit[0] == event.ts:
            return hit[1]
        encoded = pb.FeedMessage(
            event=pb.FeedEvent(seq=event.seq, ts=event.ts, data=event.data)
        ).SerializeToString()
        cache = self._cache
        if hit is not None:
            self._size -= len(hit[1])
        cache[event.seq] = (event.ts, encoded)
        self._size += len(encoded)
        while self._size > self.budget and cache:
            _, (_, old) = cache.popitem(last=False)
            self._size -= len(old)
        return encoded


def encode_reset(reset: Reset) -> bytes:
    message = pb.FeedMessage(
        reset=pb.FeedReset(since=reset.since, first=reset.first, lost=reset.lost)
    )
    return message.SerializeToString()


def encode_heartbeat() -> bytes:
    return pb.FeedMessage(heartbeat=pb.Heartbeat(server_ts=now_us())).SerializeToString()


# -- server configuration ------------------------------------------------------------------


def server_options(settings: TargetSettings) -> list[tuple[str, int]]:
    """Channel arguments of the server, each with its reason."""
    age: list[tuple[str, int]] = []
    if settings.grpc_max_connection_age > 0:
        age = [
            # Clients connect once and stay: without an age, replicas added later (a scale
            # up, a deploy's new pods) get no share of them. GOAWAY after this long makes
            # every client reconnect through its balancer; the grace lets calls finish.
            ("grpc.max_connection_age_ms", int(settings.grpc_max_connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", int(settings.grace * 1000)),
        ]
    return [
        *age,
        # Larger messages fail that call with RESOURCE_EXHAUSTED; the connection and every
        # other call on it carry on.
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        # Accept client keepalive pings down to every 5 s (clients ping every 10 s; half
        # leaves room for timer jitter), also on connections with no call open. Stricter
        # defaults (one per 5 min) would GOAWAY such clients with ENHANCE_YOUR_CALM.
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # The server pings idle connections itself, so half-open ones (client host gone,
        # NAT entry dropped) are closed within a minute instead of two hours.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        # Two targets must never share a port by accident: the second one fails to start,
        # unless sharing is asked for (the lab's processes of one protocol on one port).
        ("grpc.so_reuseport", int(settings.reuse_port)),
        # Connections beyond what the file limit allows are closed at accept: clients see
        # UNAVAILABLE and retry, instead of the process failing with EMFILE. (Core sizes
        # the listen backlog itself, from net.core.somaxconn.)
        *(
            [("grpc.max_allowed_incoming_connections", settings.max_connections)]
            if settings.max_connections > 0
            else []
        ),
    ]


# -- auth ----------------------------------------------------------------------------------


async def _deny(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")


# One refusal per call shape: the server reads requests according to the handler it gets.
# No deserializer: an unauthenticated caller's bytes are never parsed.
_DENY: dict[tuple[bool, bool], grpc.RpcMethodHandler] = {
    (False, False): grpc.unary_unary_rpc_method_handler(_deny),
    (False, True): grpc.unary_stream_rpc_method_handler(_deny),
    (True, False): grpc.stream_unary_rpc_method_handler(_deny),
    (True, True): grpc.stream_stream_rpc_method_handler(_deny),
}


class BearerTokenAuth(grpc.aio.ServerInterceptor):
    """Requires ``authorization: Bearer <token>`` on the methods of ``service``.

    Other services (health) stay open: probes and load balancers carry no token.
    """

    def __init__(self, token: str, service: str) -> None:
        self._token = token.encode()
        self._prefix = f"/{service}/"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(self._prefix):
            return handler
        if self._authorized(handler_call_details.invocation_metadata):
            return handler
        return _DENY[(handler.request_streaming, handler.response_streaming)]

    def _authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                scheme, _, presented = str(value).partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(
                    presented.strip().encode(), self._token
                )
        return False
