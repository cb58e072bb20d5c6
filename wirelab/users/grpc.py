"""``GrpcUser``: unary Echo with deadlines, the Subscribe stream with resume, bidi Chat.

gRPC's C core runs its own I/O; ``grpc.experimental.gevent.init_gevent()`` makes it yield to
the gevent hub instead of blocking the whole worker. It must run after gevent's monkey
patching (Locust's import does that) and before any channel exists, so it runs here, at
import, once per process.

A user's calls all go over one channel (one HTTP/2 connection), which it shares with up to
99 other users of its worker by default (``--grpc-streams-per-channel``; 1 gives every user a
channel and TCP connection of its own; see :mod:`.grpc_channels` for why). ``--grpc-target``
may list several ``ip:port`` replicas; the channel balances over them itself (client-side,
no proxy): with the default ``lb_policy = "pick_first"`` each user's list starts at a
different replica (users, and so their channels, spread evenly) and the channel stays on one
until it goes away, then moves to the next; ``lb_policy = "round_robin"`` spreads every call
over all replicas. Either way a resubscribe after a drain lands on a live
replica. Calls:

- ``grpc Echo``: unary, with a deadline (``deadline_s``); DEADLINE_EXCEEDED is a failure;
- ``grpc deliver``: one ``Subscribe(since)`` stream per user in its own greenlet, checked by
  the shared stream session; a ``GoAway`` message carries the reconnect hint, and the
  UNAVAILABLE that follows is a reconnect (resume from the last seq), not a failure;
- ``grpc Chat``: round trips on one bidi stream per user, opened on first use and again
  after the server ends it.

With ``WIRELAB_TOKEN`` set, every call carries ``authorization: Bearer <token>`` metadata.

TLS: ``grpcs://host:port`` (every replica alike) opens a secure channel that verifies the
server against ``--ca-file`` (else grpcio's roots); ``host:port`` stays plaintext. grpcio
cannot skip verification, so ``--tls-insecure`` with a TLS target needs ``--ca-file`` (see
:mod:`wirelab.users.tls`). With several replicas the certificate is checked against the
first one's host name.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any, ClassVar

import gevent
import grpc
import grpc._common as grpc_common
import grpc.experimental.gevent as grpc_gevent
import locust  # noqa: F401 - gevent's monkey patching must come before init_gevent
from gevent.queue import Queue
from locust import User, between, task

from ..targets.proto import wirelab_pb2 as pb
from ..targets.proto import wirelab_pb2_grpc as pb_grpc
from .grpc_channels import ChannelLease, channel_pool
from .open_model import OpenModelUser, report
from .options import (
    grpc_endpoints,
    grpc_streams_per_channel,
    payload_size,
    stop_test_on_bad_config,
    token,
)
from .stream import StreamEndedError, StreamSession, run_stream_user, shared
from .tls import grpc_credentials, tls_settings

__all__ = ["GrpcFeedUser", "GrpcUser", "GrpcUserBase", "channel_target"]

grpc_gevent.init_gevent()
# grpcio wakes every waiting call every 0.1 s, so that a main thread blocked on a lock can
# run signal handlers (grpc/grpc#19464). Under gevent a waiting call is a parked greenlet,
# signals are the hub's, and the wake-ups are pure cost: 2,000 idle streams spent 41% of a
# core on them. Waits still end at once when their call has news; this only bounds a wait
# on news that never comes.
grpc_common.MAXIMUM_WAIT_TIMEOUT = 60.0

#: Ends the request iterator of a Chat stream (the client half-closes).
_END = object()

#: Channel arguments, each with its reason.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # Keepalive finds dead connections (peer gone without a FIN) within ~15 s; the targets
    # accept pings down to every 5 s, also without calls in flight.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Reconnect quickly after a replica goes away; the stream session adds its own policy.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    # Every user gets its own TCP connection, as separate clients would: without this,
    # channels with equal arguments share one subchannel (and one connection) per process.
    ("grpc.use_local_subchannel_pool", 1),
]

#: gRPC's own retry policy for idempotent unary calls: a call that meets a replica just as
#: it goes away (UNAVAILABLE) is retried on another, as a production client is configured.
SERVICE_CONFIG: dict[str, Any] = {
    "methodConfig": [
        {
            "name": [{"service": "wirelab.v1.Lab", "method": "Echo"}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.1s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


def channel_target(
    targets: list[str], start: int = 0, lb_policy: str = "pick_first"
) -> tuple[str, list[tuple[str, Any]]]:
    """The channel target and options for ``host:port`` replicas, the list starting at
    ``start`` (so that pick_first users spread over the replicas)."""
    if len(targets) == 1:
        return targets[0], []
    first = start % len(targets)
    ordered = targets[first:] + targets[:first]
    return "ipv4:" + ",".join(ordered), [("grpc.lb_policy_name", lb_policy)]


class GrpcUserBase(OpenModelUser, User):
    """The channel, the Subscribe stream and the calls, with no tasks (see ``RestUserBase``)."""

    abstract = True
    protocol: ClassVar[str] = "grpc"
    #: Where the target address comes from (checked before users spawn).
    wirelab_target: ClassVar[tuple[str, str, str]] = ("grpc_target", "grpc_target", "grpc")
    open_name: ClassVar[str] = "grpc Echo"
    wait_time = between(0.5, 1.5)

    #: ``host:port`` (comma-separated replicas; ``grpcs://host:port`` for TLS);
    #: ``--grpc-target`` wins, then this, then --host.
    grpc_target: ClassVar[str | None] = None
    #: Run the Subscribe stream in every user.
    subscribe_feed: ClassVar[bool] = True
    #: First Subscribe's ``since``: ``None`` for live only, or a seq to replay after.
    start_since: ClassVar[int | None] = None
    echo_name: ClassVar[str] = "grpc Echo"
    chat_name: ClassVar[str] = "grpc Chat"
    stream_name: ClassVar[str] = "grpc deliver"
    #: Deadline of each unary call and of each Chat reply.
    deadline_s: ClassVar[float] = 5.0
    #: Reconnect policy spec (``--reconnect`` wins).
    reconnect: ClassVar[str | None] = None
    payload_size: ClassVar[int | None] = None
    #: With several targets: ``pick_first`` (one replica per user at a time, users spread
    #: over the list) or ``round_robin`` (every call to the next replica).
    lb_policy: ClassVar[str] = "pick_first"
    #: gRPC service config (retry policy); ``None``: no service config and no retries.
    service_config: ClassVar[dict[str, Any] | None] = SERVICE_CONFIG
    #: Longest wait between connection attempts to one address. Lower it when replicas
    #: appear at addresses the channel already holds (the local lab's prepared slots): a
    #: new replica is found within this time.
    max_reconnect_backoff_ms: ClassVar[int] = 5_000
    #: Users sharing one channel (HTTP/2 connection); 1 gives every user its own channel and
    #: TCP connection. ``None``: ``--grpc-streams-per-channel`` (default 100); see
    #: :mod:`wirelab.users.grpc_channels`.
    streams_per_channel: ClassVar[int | None] = None

    _user_counter: ClassVar[int] = 0

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        with stop_test_on_bad_config(self):
            targets, tls = grpc_endpoints(environment, self.grpc_target, self.host)
            #: TLS channel credentials, or ``None`` for a plaintext channel.
            self.credentials = grpc_credentials(tls_settings(environment)) if tls else None
            self._streams_per_channel = grpc_streams_per_channel(
                environment, self.streams_per_channel
            )
        GrpcUserBase._user_counter += 1
        self.target, extra = channel_target(targets, GrpcUserBase._user_counter, self.lb_policy)
        backoff = ("grpc.max_reconnect_backoff_ms", self.max_reconnect_backoff_ms)
        self.channel_options = [
            *[option for option in CHANNEL_OPTIONS if option[0] != backoff[0]],
            backoff,
            *extra,
        ]
        if self.service_config is not None:
            self.channel_options.append(("grpc.service_config", json.dumps(self.service_config)))
        else:
            self.channel_options.append(("grpc.enable_retries", 0))
        if self.credentials is not None and len(targets) > 1:
            # An ``ipv4:a,b`` target has no host name to check the certificate against:
            # the first replica's stands for all (replicas of one service share a cert).
            self.channel_options.append(("grpc.default_authority", targets[0]))
        # Equal for most users: one list for all of them (memory per user).
        self.channel_options = shared(self.channel_options)
        self.session = StreamSession.for_user(self, self.stream_name)
        self.payload = shared(b"x" * payload_size(environment, self.payload_size))
        bearer = token()
        self.metadata = (("authorization", f"Bearer {bearer}"),) if bearer else ()
        self.channel: grpc.Channel | None = None
        self._lease: ChannelLease | None = None
        self.stub: pb_grpc.LabStub | None = None
        self._ids = itertools.count(1)
        self._subscriber: gevent.Greenlet | None = None
        self._stream_call: Any = None
        self._chat: tuple[Queue, Any] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    #: The Subscribe loop runs in the user's own greenlet (feed subscribers only).
    _feed_in_user_greenlet: ClassVar[bool] = False

    def on_start(self) -> None:
        self._lease = channel_pool().acquire(
            self.target, self.channel_options, self.credentials, self._streams_per_channel
        )
        self.channel = self._lease.channel
        self.stub = self._lease.shared(pb_grpc.LabStub)
        if self.subscribe_feed and not self._feed_in_user_greenlet:
            self._subscriber = gevent.spawn(self.session.run_forever, self.subscribe_once)

    def on_stop(self) -> None:
        self.session.close()
        call, self._stream_call = self._stream_call, None
        if call is not None:
            call.cancel()
        if self._subscriber is not None:
            self._subscriber.kill(block=False)
            self._subscriber = None
        self._close_chat()
        lease, self._lease = self._lease, None
        if lease is not None:
            channel_pool().release(lease)
        self.channel = None

    # -- the Subscribe stream (runs in its own greenlet) --------------------------------

    def subscribe_once(self, since: int | None) -> None:
        """One ``Subscribe(since)`` call, read until it ends; raises on errors."""
        assert self.stub is not None
        session = self.session
        request = pb.SubscribeRequest() if since is None else pb.SubscribeRequest(since=since)
        started = time.perf_counter()
        call = self.stub.Subscribe(request, metadata=self.metadata)
        del request  # not kept for the life of the stream
        self._stream_call = call
        try:
            # The target sends its headers as soon as the subscription exists: that is
            # "connected". A call that failed returns here too, with its status set.
            call.initial_metadata()
            if call.done() and call.code() is not grpc.StatusCode.OK:
                raise ConnectionError(f"Subscribe failed: {call.code().name} {call.details()}")
            session.connected(time.perf_counter() - started)
            for message in call:
                kind = message.WhichOneof("kind")
                if kind == "event":
                    event = message.event
                    session.event(event.seq, event.ts, len(event.data))
                elif kind == "reset":
                    session.reset(message.reset.since, message.reset.first)
                elif kind == "goaway":
                    session.goaway(message.goaway.reconnect_after_ms / 1000)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            name = code.name if code is not None else type(exc).__name__
            raise StreamEndedError(f"Subscribe ended: {name}") from exc
        finally:
            self._stream_call = None
            call.cancel()
        raise StreamEndedError("Subscribe ended: OK")

    # -- request/response -------------------------------------------------------------

    def echo(self, intended: float | None = None) -> pb.EchoReply | None:
        """Unary ``Echo`` with a ``deadline_s`` deadline."""
        assert self.stub is not None
        message_id = str(next(self._ids))
        request = pb.EchoRequest(id=message_id, ts=time.time_ns() // 1000, payload=self.payload)
        error: BaseException | None = None
        reply = None
        sent = time.perf_counter()
        try:
            reply = self.stub.Echo(request, timeout=self.deadline_s, metadata=self.metadata)
            if reply.id != message_id or reply.payload != self.payload:
                error = ValueError("Echo reply does not match the request")
        except grpc.RpcError as exc:
            error = exc
        done = time.perf_counter()
        report(
            self.environment, self.protocol, self.echo_name, sent=sent, done=done,
            intended=intended, length=len(reply.payload) if reply is not None else 0,
            exception=error,
        )  # fmt: skip
        return reply if error is None else None

    def _open_chat(self) -> tuple[Queue, Any]:
        assert self.stub is not None
        outbox: Queue = Queue()
        responses = self.stub.Chat(iter(outbox.get, _END), metadata=self.metadata)
        self._chat = (outbox, responses)
        return self._chat

    def _close_chat(self) -> None:
        chat, self._chat = self._chat, None
        if chat is not None:
            chat[0].put(_END)
            chat[1].cancel()

    def chat(self, intended: float | None = None) -> pb.ChatMessage | None:
        """One round trip on this user's bidi ``Chat`` stream.

        A stream the server ended (UNAVAILABLE while draining, or a clean end) is reopened
        and the message sent once more, as a client of a rolling deploy does; the round trip
        is timed across both attempts and its context says it was resent.
        """
        message_id = str(next(self._ids))
        message = pb.ChatMessage(id=message_id, ts=time.time_ns() // 1000, text="wirelab")
        error: BaseException | None = None
        reply = None
        context: dict[str, Any] = {}
        sent = time.perf_counter()
        for attempt in (0, 1):
            outbox, responses = self._chat or self._open_chat()
            outbox.put(message)
            try:
                with gevent.Timeout(self.deadline_s, TimeoutError("no Chat reply in time")):
                    reply = next(responses)
                error = None if reply.id == message_id else ValueError("Chat reply out of step")
            except StopIteration:
                error = ConnectionError("the server ended the Chat stream")
            except grpc.RpcError as exc:
                error = exc
            except TimeoutError as exc:
                error = exc
            if error is None:
                break
            self._close_chat()  # a broken or out-of-step stream is not reused
            ended = isinstance(error, ConnectionError) or (
                isinstance(error, grpc.Call) and error.code() is grpc.StatusCode.UNAVAILABLE
            )
            if attempt or not ended:
                break
            context["chat_resent"] = True
        done = time.perf_counter()
        report(
            self.environment, self.protocol, self.chat_name, sent=sent, done=done,
            intended=intended, exception=error, context=context,
        )  # fmt: skip
        return reply if error is None else None

    def open_operation(self, intended: float) -> None:
        self.echo(intended)


class GrpcUser(GrpcUserBase):
    """Echo (``grpc Echo``), Chat (``grpc Chat``) and Subscribe (``grpc deliver``)."""

    abstract = True

    @task(3)
    def echo_task(self) -> None:
        self.echo()

    @task(1)
    def chat_task(self) -> None:
        self.chat()


class GrpcFeedUser(GrpcUserBase):
    """Only the ``Subscribe`` stream (``grpc deliver``), run in the user's own greenlet."""

    abstract = True
    subscribe_feed: ClassVar[bool] = True
    _feed_in_user_greenlet: ClassVar[bool] = True
    #: No unary calls to retry: a channel without retry machinery (``grpc.enable_retries``
    #: 0) keeps less state per stream.
    service_config: ClassVar[dict[str, Any] | None] = None

    def run(self) -> None:
        run_stream_user(self, self.feed)

    @task
    def feed(self) -> None:
        """Read the stream forever (what :meth:`run` does; a task so Locust lists one)."""
        self.session.run_forever(self.subscribe_once)
