"""The base of the targets that speak plain HTTP (REST, SSE): health, auth, draining."""

from __future__ import annotations

import hmac

from ..base import Target
from ..tls import server_ssl_context
from .messages import CREDENTIAL_PARAMS, HttpError, Request, Response
from .server import HttpServer, Router, ServerLimits


class HttpTarget(Target):
    """An HTTP server with ``/healthz`` and ``/readyz``; subclasses add their routes."""

    #: Every TCP connection goes to the accept log (REST); a streaming subclass counts its
    #: streams instead, so the balancer's health checks do not look like clients.
    count_tcp_accepts = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.router = Router()
        self.router.add("GET", "/healthz", self._healthz)
        self.router.add("GET", "/readyz", self._readyz)
        self.router.add("GET", "/stats", self._stats)
        self.add_routes(self.router)
        limits = ServerLimits(
            max_body_bytes=self.settings.max_message_bytes,
            header_timeout=self.settings.header_timeout,
            max_connections=self.settings.max_connections,
            send_stall_timeout=self.settings.send_stall_timeout,
            socket_send_buffer=self.settings.socket_send_buffer,
        )
        self.server = HttpServer(self.router, limits=limits, name=self.protocol)
        if self.count_tcp_accepts:
            self.server.on_accept = self.accepts.record

    def add_routes(self, router: Router) -> None:
        """Register the protocol's own routes."""

    async def start(self) -> int:
        tls = server_ssl_context(self.settings.tls_cert, self.settings.tls_key)
        settings = self.settings
        self.port = await self.server.start(
            settings.host,
            settings.port,
            ssl=tls,
            backlog=settings.listen_backlog,
            reuse_port=settings.reuse_port,
        )
        return self.port

    def mark_draining(self) -> None:
        super().mark_draining()
        self.server.closing_connections = True

    async def stop_accepting(self) -> None:
        self.end_subscriptions()
        self.server.begin_drain()

    async def wait_closed(self, timeout: float) -> bool:
        return await self.server.wait_closed(timeout)

    async def drop_connections(self) -> int:
        self.drops += 1
        return self.server.abort_connections()

    def _healthz(self, request: Request) -> Response:
        return Response.json({"status": "ok", "protocol": self.protocol})

    def stats(self) -> dict[str, object]:
        """Server-side figures a client cannot see; subclasses add their own."""
        return {
            **super().stats(),
            "accepted_connections": self.server.accepted,
            "active_connections": len(self.server.connections),
            "refused_connections": self.server.refused,
            "stalled_streams": self.server.stalled,
            "requests": dict(self.server.router.served),
            "resumes": 0,
            "replayed": 0,
        }

    def _stats(self, request: Request) -> Response:
        self.authorize(request)
        return Response.json(self.stats(), headers=[("Cache-Control", "no-store")])

    def _readyz(self, request: Request) -> Response:
        if self.ready:
            return Response.json({"status": "ready"})
        state = "draining" if self.draining else "starting"
        return Response.json({"status": state}, status=503)

    def authorize(self, request: Request) -> None:
        """Refuse credentials in the URL always, and a missing/wrong bearer token when set."""
        if request.query_string and CREDENTIAL_PARAMS.intersection(request.query):
            raise HttpError(
                400,
                "credentials_in_url",
                "credentials are not accepted in the URL; send Authorization: Bearer",
            )
        token = self.settings.token
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip(), token):
            raise HttpError(
                401,
                "unauthorized",
                "missing or invalid bearer token",
                headers=[("WWW-Authenticate", 'Bearer realm="wirelab"')],
            )
