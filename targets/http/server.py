"""A small HTTP/1.1 server on asyncio + httptools, built for the targets' hot path.

Why not an ASGI server: the REST target is the baseline of every benchmark, and measured
on this 2-core machine a raw ASGI app under uvicorn served about 0.24 of nginx's requests/s
(wrk, same run); most of the gap is the ASGI message-passing layer. This server calls
handlers directly: a plain function runs inline with no task, and only handlers that
wait (long poll, SSE) become tasks. It also gives the targets the control they need
over draining: ``Connection: close`` while draining, closing idle keep-alive connections,
and waiting for requests in flight.

Requests on one connection are answered in order (HTTP/1.1 pipelining), reading pauses
while too many are queued, and malformed or oversized input closes only that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus

import httptools

from ...limits import listen_backlog
from .messages import HttpError, Request, Response, StreamResponse

log = logging.getLogger(__name__)

Handler = Callable[[Request], Response | StreamResponse | Awaitable[Response | StreamResponse]]

_REASONS = {status.value: status.phrase for status in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode()
        _STATUS_LINES[status] = line
    return line


class _Clock:
    """The ``Date`` header, formatted at most once per second."""

    def __init__(self) -> None:
        self._second = 0
        self._header = b""

    def date_header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._header = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._header


_clock = _Clock()


class Router:
    """Maps ``(method, path)`` to a handler; ``{name}`` segments become ``request.params``."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, tuple[Handler, bool, str]]] = {}
        self._patterns: list[tuple[list[str], dict[str, tuple[Handler, bool, str]]]] = []
        #: Requests routed, by ``"METHOD /path/{pattern}"``: the server side of the count
        #: a load generator reports, so the two can be compared.
        self.served: dict[str, int] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        entry = (handler, inspect.iscoroutinefunction(handler), f"{method} {path}")
        if "{" not in path:
            self._exact.setdefault(path, {})[method] = entry
            return
        parts = path.strip("/").split("/")
        for existing, methods in self._patterns:
            if existing == parts:
                methods[method] = entry
                return
        self._patterns.append((parts, {method: entry}))

    def resolve(self, request: Request) -> tuple[Handler, bool]:
        """The handler for ``request`` and whether it is async; 404/405 otherwise."""
        methods = self._exact.get(request.path)
        if methods is None:
            methods = self._match_pattern(request)
        if methods is None:
            raise HttpError(404, "not_found", f"no resource at {request.path}")
        entry = methods.get(request.method)
        if entry is None and request.method == "HEAD":
            entry = methods.get("GET")
        if entry is not None:
            served = self.served
            served[entry[2]] = served.get(entry[2], 0) + 1
            return entry[0], entry[1]
        raise HttpError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.path}",
            headers=[("Allow", ", ".join(sorted(methods)))],
        )

    def _match_pattern(self, request: Request) -> dict[str, tuple[Handler, bool, str]] | None:
        parts = request.path.strip("/").split("/")
        for pattern, methods in self._patterns:
            if len(pattern) != len(parts):
                continue
            params: dict[str, str] = {}
            for want, got in zip(pattern, parts, strict=True):
                if want.startswith("{"):
                    if not got:
                        break
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                request.params = params
                return methods
        return None


def set_send_buffer(transport: asyncio.BaseTransport, size: int) -> None:
    """Cap the kernel's send buffer of one connection (``SO_SNDBUF``)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


class ServerLimits:
    """Bounds that keep one bad client from hurting the others."""

    def __init__(
        self,
        *,
        max_header_bytes: int = 16 * 1024,
        max_body_bytes: int = 1024 * 1024,
        max_pipelined: int = 32,
        header_timeout: float = 10.0,
        keepalive_timeout: float = 75.0,
        max_connections: int = 10_000,
        send_stall_timeout: float = 10.0,
        socket_send_buffer: int = 0,
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.max_pipelined = max_pipelined
        #: A request's headers must arrive within this (slowloris).
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        #: Open connections beyond this are answered 503 + Retry-After and closed.
        self.max_connections = max_connections
        #: A stream whose transport stays above its high-water mark this long is closed.
        self.send_stall_timeout = send_stall_timeout
        #: SO_SNDBUF of each connection (0: the kernel's autotuning).
        self.socket_send_buffer = socket_send_buffer


class HttpServer:
    """Serves one :class:`Router` on one listening socket, and drains it on request."""

    def __init__(
        self, router: Router, *, limits: ServerLimits | None = None, name: str = "http"
    ) -> None:
        self.router = router
        self.limits = limits or ServerLimits()
        self.name = name
        self.connections: set[HttpConnection] = set()
        #: Set once draining starts: responses carry ``Connection: close`` and streams end.
        self.draining = asyncio.Event()
        #: Responses carry ``Connection: close``: set as soon as the target is not ready, so
        #: keep-alive clients come back through the load balancer to another replica.
        self.closing_connections = False
        self.accepted = 0
        #: Connections refused at the limit, and streams cut because the client stopped reading.
        self.refused = 0
        self.stalled = 0
        #: Called once per accepted connection (the target's accept log), when set.
        self.on_accept: Callable[[], None] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(
        self,
        host: str,
        port: int,
        *,
        backlog: int = 0,
        ssl: object | None = None,
        reuse_port: bool = False,
    ) -> int:
        """Listen on ``host:port`` (port 0 picks one; ``ssl``: an SSLContext for HTTPS;
        ``backlog`` 0: the kernel's most; ``reuse_port``: share the port with other
        processes, ``SO_REUSEPORT``); returns the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpConnection(self),
            host,
            port,
            backlog=backlog or listen_backlog(),
            reuse_address=True,
            reuse_port=reuse_port or None,
            ssl=ssl,  # type: ignore[arg-type]
        )
        self._sweeper = asyncio.create_task(self._sweep(), name=f"{self.name} sweeper")
        return self._server.sockets[0].getsockname()[1]

    def stop_accepting(self) -> None:
        """Close the listening socket; established connections carry on."""
        if self._server is not None:
            self._server.close()

    def begin_drain(self) -> None:
        """Stop accepting, end streams, and close each connection after its current response."""
        self.draining.set()
        self.closing_connections = True
        self.stop_accepting()
        for connection in list(self.connections):
            connection.close_if_idle()

    def abort_connections(self) -> int:
        """Reset every connection at once (no response, no FIN): a network blip."""
        connections = list(self.connections)
        for connection in connections:
            connection.abort()
        return len(connections)

    async def wait_closed(self, timeout: float) -> bool:
        """Wait for every connection to finish; abort what remains after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        finished = not self.connections
        for connection in list(self.connections):
            connection.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
        return finished

    async def _sweep(self) -> None:
        # One periodic pass instead of a timer per request keeps the hot path free of
        # timer churn; timeouts are enforced to within a second, which is plenty here.
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check_timeouts(now)


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests, runs handlers in order, writes responses."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[Request] = deque()
        self.busy = False
        self.closing = False
        self.task: asyncio.Task[None] | None = None
        self.last_activity = time.monotonic()
        self.headers_started: float | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.reading = True
        # Per-request parse state.
        self._url = b""
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._limit_error: HttpError | None = None

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        if self.limits.socket_send_buffer:
            set_send_buffer(transport, self.limits.socket_send_buffer)
        self.server.accepted += 1
        if self.server.on_accept is not None:
            self.server.on_accept()
        if self.server.draining.is_set():
            # Accepted in the instant before the listener closed: refuse politely.
            self._write_response(
                HttpError(503, "draining", "server is shutting down").to_response(), close=True
            )
        elif len(self.server.connections) > self.limits.max_connections:
            # Refuse clearly, before reading a byte, rather than run out of fds or memory.
            self.server.refused += 1
            error = HttpError(
                503,
                "too_many_connections",
                f"connection limit ({self.limits.max_connections}) reached; retry later",
                headers=[("Retry-After", "1")],
            )
            self._write_response(error.to_response(), close=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)
        self.writable.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HttpError(400, "upgrade_not_supported", "this endpoint does not upgrade"))
        except httptools.HttpParserError as exc:
            # httptools wraps exceptions raised in callbacks; ours carry the real answer.
            error = self._limit_error or HttpError(
                400, "malformed_request", f"malformed HTTP request: {exc}"
            )
            if not self.closing:
                self._fail(error)
        except HttpError as exc:
            self._fail(exc)

    # -- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._header_bytes = 0
        self._body = []
        self._body_bytes = 0
        self.headers_started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_header_bytes(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value))
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        self.headers_started = None
        length = self._headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limits.max_body_bytes:
            # Refuse before reading a byte of a body we would not accept.
            self._limit(413, "body_too_large", f"body exceeds {self.limits.max_body_bytes} bytes")

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            self._limit(413, "body_too_large", f"body exceeds {self.limits.max_body_bytes} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        url = httptools.parse_url(self._url)
        path = url.path.decode("utf-8", "replace")
        query = url.query.decode("utf-8", "replace") if url.query else ""
        request = Request(
            self.parser.get_method().decode(),
            path,
            query,
            self._headers,
            b"".join(self._body),
            self.parser.should_keep_alive(),
        )
        self.pending.append(request)
        if len(self.pending) >= self.limits.max_pipelined and self.reading:
            self.transport.pause_reading()
            self.reading = False
        if not self.busy:
            self._dispatch()

    def _count_header_bytes(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes:
            self._limit(
                431,
                "headers_too_large",
                f"request line and headers exceed {self.limits.max_header_bytes} bytes",
            )

    def _limit(self, status: int, code: str, message: str) -> None:
        """Abort parsing: the error is answered by :meth:`data_received`, then we close."""
        self._limit_error = HttpError(status, code, message, close=True)
        raise self._limit_error

    # -- running handlers ------------------------------------------------------------

    def _dispatch(self) -> None:
        """Answer queued requests in order; hands over to a task when a handler waits."""
        while self.pending and not self.closing:
            request = self.pending.popleft()
            try:
                handler, is_async = self.server.router.resolve(request)
                if is_async:
                    self.busy = True
                    self.task = asyncio.get_running_loop().create_task(
                        self._run_async(handler, request)
                    )
                    return
                response = handler(request)
                if type(response) is not Response and inspect.isawaitable(response):
                    # A plain handler that found it must wait (e.g. a delayed echo).
                    self.busy = True
                    self.task = asyncio.get_running_loop().create_task(
                        self._run_async(lambda _request, pending=response: pending, request)
                    )
                    return
            except HttpError as exc:
                response = exc.to_response()
                if exc.close:
                    self._respond(request, response, force_close=True)
                    return
            except Exception:
                log.exception("handler failed: %s %s", request.method, request.path)
                response = HttpError(500, "internal", "internal server error").to_response()
            if isinstance(response, StreamResponse):
                self.busy = True
                self.task = asyncio.get_running_loop().create_task(self._stream(request, response))
                return
            self._respond(request, response)
        self._after_requests()

    async def _run_async(self, handler: Handler, request: Request) -> None:
        try:
            response = await handler(request)  # type: ignore[misc]
        except asyncio.CancelledError:
            return
        except HttpError as exc:
            response = exc.to_response()
            if exc.close:
                self.busy = False
                self._respond(request, response, force_close=True)
                return
        except Exception:
            log.exception("handler failed: %s %s", request.method, request.path)
            response = HttpError(500, "internal", "internal server error").to_response()
        if isinstance(response, StreamResponse):
            await self._stream(request, response)
            return
        self.busy = False
        self._respond(request, response)
        self._dispatch()

    def _after_requests(self) -> None:
        self.busy = False
        if not self.reading and not self.closing and self.transport is not None:
            self.reading = True
            self.transport.resume_reading()
        if self.server.draining.is_set():
            self.close_if_idle()

    def _respond(self, request: Request, response: Response, *, force_close: bool = False) -> None:
        close = force_close or not request.keep_alive or self.server.closing_connections
        if request.method == "HEAD":
            response = Response(
                b"", status=response.status, headers=response.headers, content_type=None
            )
        self._write_response(response, close=close)
        self.last_activity = time.monotonic()

    def _write_response(self, response: Response, *, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        parts = [_status_line(response.status), _clock.date_header(), b"Server: wirelab\r\n"]
        for name, value in response.headers:
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
        if response.status not in (204, 304) and not (100 <= response.status < 200):
            parts.append(b"Content-Length: %d\r\n" % len(response.body))
        if close:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        if response.body:
            parts.append(response.body)
        self.transport.write(b"".join(parts))
        if close:
            self.closing = True
            self.transport.close()

    async def _stream(self, request: Request, response: StreamResponse) -> None:
        """Send a chunked body as the handler produces it, respecting TCP back-pressure."""
        transport = self.transport
        assert transport is not None
        head = [_status_line(response.status), _clock.date_header(), b"Server: wirelab\r\n"]
        for name, value in response.headers:
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        head.append(b"Transfer-Encoding: chunked\r\n\r\n")
        transport.write(b"".join(head))
        chunks = response.chunks
        try:
            async for chunk in chunks:
                if self.closing:
                    break
                if chunk:
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                if not self.writable.is_set() and not await self._wait_writable(request):
                    break
            else:
                if not self.closing:
                    transport.write(b"0\r\n\r\n")
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("stream failed: %s %s", request.method, request.path)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        # A stream ends its connection: simpler for clients to reason about, and a
        # stream that ends early usually means the server is going away.
        self.closing = True
        if not transport.is_closing():
            transport.close()

    async def _wait_writable(self, request: Request) -> bool:
        """Wait for the client to read; ``False`` (and the connection cut) if it does not."""
        try:
            async with asyncio.timeout(self.limits.send_stall_timeout):
                await self.writable.wait()
        except TimeoutError:
            # The client stopped reading: cut it instead of buffering for it. It resumes
            # from the feed's log (Last-Event-ID) when it comes back.
            self.server.stalled += 1
            log.info(
                "closing stalled stream %s: send buffer full for %.1f s",
                request.path,
                self.limits.send_stall_timeout,
            )
            self.closing = True
            if self.transport is not None:
                self.transport.abort()
            return False
        return True

    # -- closing ---------------------------------------------------------------------

    def _fail(self, error: HttpError) -> None:
        """Answer a protocol-level error and close: the byte stream can't be trusted."""
        self.pending.clear()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._write_response(error.to_response(), close=True)
        self.closing = True

    def close_if_idle(self) -> None:
        if not self.busy and not self.pending and self.transport is not None:
            self.closing = True
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def check_timeouts(self, now: float) -> None:
        if self.busy or self.closing:
            return
        if (
            self.headers_started is not None
            and now - self.headers_started > self.limits.header_timeout
        ):
            self._fail(HttpError(408, "request_timeout", "request headers took too long"))
        elif now - self.last_activity > self.limits.keepalive_timeout:
            self.close_if_idle()
