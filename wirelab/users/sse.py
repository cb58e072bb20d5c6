"""``SseUser``: one Server-Sent Events stream per user, checked event by event.

Transport: a plain gevent socket; the status line and headers parsed by geventhttpclient's
llhttp parser (the C parser Locust's FastHttpUser already ships), the body's framing by
:mod:`wirelab.http_body` and the event stream by :mod:`wirelab.sse_parser`, read in event-loop
callbacks (:mod:`.socket_reader`). Why not FastHttpUser or requests: geventhttpclient's
response ``read(n)`` waits until ``n`` bytes have arrived, which holds back a quiet stream's
events (lag would measure the buffer, not the server); requests/urllib3 streaming works under
gevent but costs tens of KB per connection (session, pool, buffered reader), and this user is
the one people run tens of thousands of per worker. Here a connection is a socket, two small
decoders and the user's greenlet; body bytes go to the event-stream parser the moment they
arrive.

Behaviour, as a browser's EventSource plus what a load test needs:

- resumes with ``Last-Event-ID`` = the last seq delivered (the session's resume point),
  on whichever replica it reaches (``--sse-url`` may list several; each reconnect takes the
  next);
- honours ``retry:`` (the reconnection time it sets is the hint for ``server_hint``);
- reads with a timeout of ``read_timeout`` seconds (a few heartbeat intervals): a stream
  with no bytes at all for that long is a zombie (peer gone without a FIN) and is
  reconnected;
- ``event: reset`` is an explicit loss (out of retention), counted as a reset, not a gap;
- ``event: goaway`` (a draining server) is a hinted reconnect: its ``reconnect_after_ms``.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson
from geventhttpclient.response import HTTPParseError, HTTPResponse
from locust import User, task

from ..http_body import BodyDecoder, BodyFramingError
from ..sse_parser import SseEvent, SseParser
from .options import stop_test_on_bad_config, target_urls, token
from .socket_reader import RECV_BYTES as _RECV_BYTES
from .socket_reader import IdleStreamError, SocketReader
from .source_addresses import source_addresses_for
from .stream import (
    GoAwayError,
    StreamEndedError,
    StreamSession,
    open_socket,
    run_stream_user,
    shared,
)
from .tls import client_context, stream_tls

__all__ = ["SseHttpError", "SseUser", "ZombieStreamError"]


class SseHttpError(ConnectionError):
    """The server answered the stream request with something other than an event stream."""


class ZombieStreamError(ConnectionError):
    """No bytes (not even a heartbeat) for ``read_timeout`` seconds."""


#: Longest response head (status line and headers) read before the stream is refused.
MAX_HEAD_BYTES = 64 * 1024


def read_head(sock: Any) -> tuple[HTTPResponse, bytes]:
    """Read the response's status line and headers, parsed by llhttp, and return them with
    the body bytes that arrived in the same reads.

    Raises:
        StreamEndedError: the connection closed first.
        SseHttpError: no end of the headers within :data:`MAX_HEAD_BYTES`, or not a
            response llhttp can parse.
    """
    buffer = b""
    while True:
        data = sock.recv(_RECV_BYTES)
        if not data:
            raise StreamEndedError("connection closed before the response headers")
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            end += 4
            break
        end = buffer.find(b"\n\n")
        if end >= 0:
            end += 2
            break
        if len(buffer) > MAX_HEAD_BYTES:
            raise SseHttpError(f"no end of the response headers in {MAX_HEAD_BYTES} bytes")
    response = HTTPResponse("GET")
    try:
        response.feed(buffer[:end])
    except HTTPParseError as exc:
        raise SseHttpError(f"malformed response: {exc}") from None
    if not response.headers_complete:
        raise SseHttpError("malformed response headers")
    return response, buffer[end:]


class _OpenStream:
    """One open event stream: body framing, event-stream parsing, the session's checks.

    ``on_data`` runs for every read (in the event loop, see :mod:`.socket_reader`).
    """

    __slots__ = ("_body", "_parser", "_user")

    def __init__(self, user: SseUser, body: BodyDecoder) -> None:
        self._body = body
        self._parser = SseParser()
        self._user = user

    def on_data(self, data: bytes) -> None:
        body = self._body
        payload = body.feed(data)
        if payload:
            parser = self._parser
            events = parser.feed(payload)
            if events:
                self._user._handle(events)
            if parser.retry_ms is not None:
                self._user.session.sticky_hint_s = parser.retry_ms / 1000
        if body.complete:
            raise StreamEndedError("server ended the stream")


class SseUser(User):
    """Reads the feed over SSE, resuming with ``Last-Event-ID`` across reconnects."""

    abstract = True
    protocol: ClassVar[str] = "sse"
    #: Where the target address comes from (checked before users spawn).
    wirelab_target: ClassVar[tuple[str, str, str]] = ("sse_url", "sse_url", "http")
    #: Base URL(s); ``--sse-url``/``WIRELAB_SSE_URL`` win, then this, then ``--host``.
    sse_url: ClassVar[str | None] = None
    stream_path: ClassVar[str] = "/stream"
    #: Stream series and Locust deliver event name.
    stream_name: ClassVar[str] = "sse deliver"
    #: First connection's resume point: ``None`` for live only, or a seq to replay after.
    start_since: ClassVar[int | None] = None
    #: Reconnect policy spec (``--reconnect`` wins).
    reconnect: ClassVar[str | None] = None
    connect_timeout: ClassVar[float] = 10.0
    #: No bytes for this long means a dead connection (targets heartbeat every 15 s).
    read_timeout: ClassVar[float] = 45.0
    #: Local addresses to connect from, rotated per connection; ``--source-addresses``
    #: wins. Unset, loopback targets spread over 127.0.0.0/8 (see
    #: :mod:`wirelab.users.source_addresses`).
    source_addresses: ClassVar[list[str] | None] = None

    #: Verify the server's certificate on https URLs; ``False`` skips it for this class, as
    #: ``--tls-insecure`` does for all (self-signed labs only). ``--ca-file`` names the CA.
    verify_tls: ClassVar[bool] = True

    _user_counter: ClassVar[int] = 0

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        with stop_test_on_bad_config(self):
            self.urls = shared(target_urls(environment, "sse_url", self.sse_url, self.host, "http"))
            self._tls = shared(
                stream_tls(
                    environment, self.urls, secure_scheme="https://", insecure=not self.verify_tls
                )
            )
            # A source address list that cannot work stops the run here, not per connect.
            source_addresses_for(environment, "", self.source_addresses)
        self.session = StreamSession.for_user(self, self.stream_name)
        # Users spread over the replicas from the start, then rotate on each reconnect.
        SseUser._user_counter += 1
        self.session.start_at(SseUser._user_counter)
        bearer = token()
        self._auth = f"Authorization: Bearer {bearer}\r\n" if bearer else ""

    def on_stop(self) -> None:
        self.session.close()

    def run(self) -> None:
        """The whole life of this user: read, reconnect, resume; until stopped.

        Runs in the user's greenlet without Locust's task loop (see ``run_stream_user``);
        an SSE client has nothing else to do.
        """
        run_stream_user(self, self.stream)

    @task
    def stream(self) -> None:
        """Read the stream forever (what :meth:`run` does; a task so Locust lists one)."""
        self.session.run_forever(self.stream_once)

    # -- one connection ---------------------------------------------------------------

    def tls_context(self) -> ssl.SSLContext:
        """The process's shared client TLS context for this user's setting (see
        :mod:`wirelab.users.tls`)."""
        return client_context(self._tls)

    def _request(self, url: str, since: int | None) -> tuple[str, int, bool, bytes]:
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        path = (parts.path.rstrip("/") + self.stream_path) or "/"
        resume = f"Last-Event-ID: {since}\r\n" if since is not None else ""
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
            f"Cache-Control: no-cache\r\n{resume}{self._auth}\r\n"
        ).encode()
        return host, port, tls, request

    def stream_once(self, since: int | None) -> None:
        """Open one stream after ``since`` and read it until it ends; raises on errors."""
        session = self.session
        host, port, tls, request = self._request(session.next_url(self.urls), since)
        started = time.perf_counter()
        sources = source_addresses_for(self.environment, host, self.source_addresses)
        source = sources.next() if sources is not None else None
        sock = open_socket(host, port, self.connect_timeout, source)
        reader = None
        try:
            if tls:
                sock = self.tls_context().wrap_socket(sock, server_hostname=host)
            sock.sendall(request)
            del request  # an idle stream keeps nothing it does not need (memory)
            stream, first = self._open(sock)
            session.connected(time.perf_counter() - started)
            if first:
                stream.on_data(first)
            del first
            # From here the reader owns the socket (and keeps only what it reads from).
            reader, sock = SocketReader(sock, stream.on_data), None
            try:
                reader.run(self.read_timeout)
            except IdleStreamError:
                raise ZombieStreamError(
                    f"no bytes for {self.read_timeout:g}s (not even a heartbeat)"
                ) from None
            raise StreamEndedError("server closed the stream")
        finally:
            if reader is not None:
                reader.close()
            elif sock is not None:
                sock.close()

    def _open(self, sock: Any) -> tuple[_OpenStream, bytes]:
        """Check the response is an event stream; the stream and the body bytes so far."""
        response, first = read_head(sock)
        status = response.status_code
        content_type = str(response.get("content-type") or "")
        if status != 200 or not content_type.startswith("text/event-stream"):
            raise SseHttpError(f"HTTP {status} {content_type or 'without content type'}")
        try:
            body = BodyDecoder.for_headers(
                response.get("transfer-encoding"), response.get("content-length")
            )
        except BodyFramingError as exc:
            raise SseHttpError(str(exc)) from None
        return _OpenStream(self, body), first

    def _handle(self, events: list[SseEvent]) -> None:
        session = self.session
        goaway = None
        for event in events:
            kind = event.type
            if kind == "message":
                message = orjson.loads(event.data)
                session.event(message["seq"], message["ts"], len(event.data))
            elif kind == "reset":
                message = orjson.loads(event.data)
                session.reset(int(message["since"]), int(message["first"]))
            elif kind == "goaway":
                goaway = event
        events.clear()
        if goaway is not None:
            hint_ms = None
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                hint_ms = orjson.loads(goaway.data).get("reconnect_after_ms")
            if hint_ms is None:
                hint_ms = goaway.retry_ms
            session.goaway(None if hint_ms is None else hint_ms / 1000)
            raise GoAwayError("server is going away")
