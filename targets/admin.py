"""The admin port: what an orchestrator and a monitor need from a target process.

Every ``wirelab targets serve`` process may open a second, small HTTP server
(``--admin-port``), built on the same server as the REST target, bound to loopback unless
told otherwise:

``GET /healthz``        the process is up
``GET /readyz``         200 while every target of the process is ready; 503 from the moment
                        draining starts (a load balancer or an orchestrator polls this)
``GET /stats``          every target's :meth:`~wirelab.targets.base.Target.stats`, plus the
                        finished 100 ms accept buckets after ``?after=BUCKET`` (the storm's
                        shape), the pid, the process's ready/draining state and its garbage
                        collector's passes (see :mod:`.collector`)
``POST /admin/drain``   the same sequence as SIGTERM (readiness off, drain delay, goodbye to
                        every client, wait for work in flight), then the process exits
``POST /admin/drop``    reset every client connection at once and keep serving: the
                        network-blip storm (see each target's ``drop_connections``)

Why a separate port: it must answer while the protocol ports refuse connections (during the
drain, a monitor still reads the counters), it must not be reachable through the load
balancer, and it speaks the same plain HTTP for every protocol, gRPC included.

When ``WIRELAB_ADMIN_TOKEN`` is set, every path but ``/healthz`` and ``/readyz`` requires
``Authorization: Bearer <token>``: draining a replica is an action, and the counters are
nobody else's business.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import Callable

from .base import Target
from .collector import collector_stats
from .http.messages import HttpError, Request, Response
from .http.server import HttpServer, Router

ADMIN_TOKEN_ENV = "WIRELAB_ADMIN_TOKEN"  # noqa: S105 - the name of a variable, not a secret


class AdminServer:
    """Serves the admin endpoints of one process's targets (see the module docstring)."""

    def __init__(
        self,
        targets: list[Target],
        *,
        request_drain: Callable[[], None],
        token: str | None = None,
    ) -> None:
        self.targets = targets
        self.request_drain = request_drain
        self.token = token if token is not None else (os.environ.get(ADMIN_TOKEN_ENV) or None)
        self.drain_requested = False
        router = Router()
        router.add("GET", "/healthz", self._healthz)
        router.add("GET", "/readyz", self._readyz)
        router.add("GET", "/stats", self._stats)
        router.add("POST", "/admin/drain", self._drain)
        router.add("POST", "/admin/drop", self._drop)
        self.server = HttpServer(router, name="admin")
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        # The kernel's most, like the protocol ports: a monitor and an orchestrator poll it
        # in the middle of the storms that fill the others.
        self.port = await self.server.start(host, port)
        return self.port

    async def close(self) -> None:
        self.server.begin_drain()
        await self.server.wait_closed(1.0)

    @property
    def ready(self) -> bool:
        return bool(self.targets) and all(target.ready for target in self.targets)

    @property
    def draining(self) -> bool:
        return self.drain_requested or any(target.draining for target in self.targets)

    # -- handlers --------------------------------------------------------------------

    def _healthz(self, request: Request) -> Response:
        return Response.json({"status": "ok", "pid": os.getpid()})

    def _readyz(self, request: Request) -> Response:
        if self.ready:
            return Response.json({"status": "ready"})
        return Response.json({"status": "draining" if self.draining else "starting"}, status=503)

    def _stats(self, request: Request) -> Response:
        self._authorize(request)
        after = request.query_int("after", 0, minimum=0) if request.query_string else 0
        targets = {}
        for target in self.targets:
            figures = target.stats()
            figures["accepts"] = target.accepts.finished_after(after)
            targets[target.protocol] = figures
        body = {
            "pid": os.getpid(),
            "ready": self.ready,
            "draining": self.draining,
            "accept_bucket_ms": 100,
            "targets": targets,
            "gc": collector_stats(),
        }
        return Response.json(body, headers=[("Cache-Control", "no-store")])

    def _drain(self, request: Request) -> Response:
        self._authorize(request)
        if not self.drain_requested:
            self.drain_requested = True
            self.request_drain()
        return Response.json({"status": "draining", "pid": os.getpid()}, status=202)

    async def _drop(self, request: Request) -> Response:
        self._authorize(request)
        cut = await asyncio.gather(*(target.drop_connections() for target in self.targets))
        dropped = {target.protocol: count for target, count in zip(self.targets, cut, strict=True)}
        return Response.json({"dropped": dropped, "pid": os.getpid()})

    def _authorize(self, request: Request) -> None:
        token = self.token
        if token is None:
            return
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip(), token):
            raise HttpError(
                401,
                "unauthorized",
                "missing or invalid admin token",
                headers=[("WWW-Authenticate", 'Bearer realm="wirelab-admin"')],
            )
