"""The control API: the ``wirelab run`` parent's orchestrator, callable from the Locust master.

The parent owns the lab's processes (it started them and it stops them), but the run's
timeline lives in the Locust master: that is where a scenario's ``actions`` must fire and be
annotated. So the parent serves its :class:`~.local_orchestrator.LocalOrchestrator` on
loopback, and the master holds a :class:`ControlClient`, which implements the same
:class:`~.orchestrator.Orchestrator` protocol over HTTP. On Kubernetes the master uses
``KubernetesOrchestrator`` directly instead; nothing else changes.

Endpoints (JSON; every one needs ``Authorization: Bearer <token>``, a random token the
parent makes per run and hands to the master only, in ``WIRELAB_CONTROL_TOKEN``):

``POST /actions/rolling_restart``   ``{"service", "timeout"}``
``POST /actions/kill``              ``{"service", "count"}``
``POST /actions/drop_connections``  ``{"service"}``
``POST /actions/scale``             ``{"service", "replicas", "timeout"}``
``POST /actions/wait_ready``        ``{"service", "timeout"}``
``GET /replicas``                   every replica process now (name, protocol, admin URL...)
``GET /events?after=N``             the lab's events after sequence number N

An action answers 200 with the :class:`~.orchestrator.ActionResult`, 409 with
``{"error": "..."}`` when it could not be done (an :class:`OrchestratorError`), 400 for bad
input, 401 without the token. The call returns when the action has finished.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .orchestrator import ActionResult, OrchestratorError

__all__ = ["CONTROL_TOKEN_ENV", "CONTROL_URL_ENV", "ControlClient", "ControlServer"]

CONTROL_URL_ENV = "WIRELAB_CONTROL_URL"
CONTROL_TOKEN_ENV = "WIRELAB_CONTROL_TOKEN"  # noqa: S105 - the name of a variable
#: Seconds a client waits beyond an action's own timeout for its answer.
_SLACK_S = 60.0

log = logging.getLogger(__name__)


class ControlServer:
    """Serves an orchestrator on ``127.0.0.1`` (a free port) in a background thread."""

    def __init__(self, orchestrator: Any, *, token: str | None = None, host: str = "127.0.0.1"):
        self.orchestrator = orchestrator
        self.token = token or secrets.token_urlsafe(24)
        server = self

        class Handler(_Handler):
            control = server

        self._httpd = _QuietServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def environment(self) -> dict[str, str]:
        """What the master needs to reach this server."""
        return {CONTROL_URL_ENV: self.url, CONTROL_TOKEN_ENV: self.token}

    def start(self) -> ControlServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="wirelab-control", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- dispatch ----------------------------------------------------------------------

    def act(self, name: str, body: dict[str, Any]) -> ActionResult | None:
        """Run action ``name`` with the JSON ``body``'s arguments."""
        orchestrator = self.orchestrator
        service = body.get("service")
        if not isinstance(service, str) or not service:
            raise ValueError("'service' is required (a protocol or 'all')")
        if name == "rolling_restart":
            return orchestrator.rolling_restart(service, timeout=_number(body, "timeout", 300.0))
        if name == "kill":
            return orchestrator.kill(service, int(_number(body, "count", 1)))
        if name == "drop_connections":
            return orchestrator.drop_connections(service)
        if name == "scale":
            if "replicas" not in body:
                raise ValueError("'replicas' is required")
            return orchestrator.scale(
                service,
                int(_number(body, "replicas", 1)),
                timeout=_number(body, "timeout", 120.0),
            )
        if name == "wait_ready":
            orchestrator.wait_ready(service, timeout=_number(body, "timeout", 120.0))
            return None
        raise LookupError(name)


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"'{key}' must be a number")
    return float(value)


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer (the master stopping) is no error worth a trace."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            log.debug("control client %s went away: %s", client_address, error)
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    control: ControlServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("control: " + format, *args)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        scheme, _, presented = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip(), self.control.token
        ):
            return True
        self._reply(401, {"error": "missing or invalid bearer token"})
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        parts = urlsplit(self.path)
        orchestrator = self.control.orchestrator
        if parts.path == "/replicas":
            self._reply(200, {"replicas": orchestrator.replicas()})
        elif parts.path == "/events":
            raw = parse_qs(parts.query).get("after", ["0"])[0]
            after = int(raw) if raw.isdigit() else 0
            self._reply(200, {"events": orchestrator.events(after)})
        else:
            self._reply(404, {"error": f"no resource {parts.path}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self._authorized():
            return
        path = urlsplit(self.path).path
        if not path.startswith("/actions/"):
            self._reply(404, {"error": f"no resource {path}"})
            return
        name = path.removeprefix("/actions/")
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            result = self.control.act(name, body)
        except LookupError:
            self._reply(404, {"error": f"no action {name!r}"})
        except (ValueError, TypeError) as exc:
            self._reply(400, {"error": str(exc)})
        except OrchestratorError as exc:
            self._reply(409, {"error": str(exc)})
        except Exception as exc:
            log.exception("control action %s failed", name)
            self._reply(500, {"error": f"{type(exc).__name__}: {exc}"})
        else:
            self._reply(200, {"result": asdict(result) if result is not None else None})


class ControlClient:
    """The :class:`~.orchestrator.Orchestrator` protocol over the control API.

    Plain ``urllib``: in the Locust master gevent has patched its sockets, so a long action
    (a rolling restart takes tens of seconds) parks only the greenlet that called it.
    """

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> ControlClient | None:
        """The client the parent described in the environment, or ``None`` (no lab)."""
        env = dict(os.environ) if env is None else env
        url, token = env.get(CONTROL_URL_ENV), env.get(CONTROL_TOKEN_ENV)
        return cls(url, token) if url and token else None

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None, timeout: float
    ) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        # The parent's own http://127.0.0.1 address, never a user's URL.
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", "")
            except ValueError:
                message = ""
            raise OrchestratorError(message or f"control API answered {exc.code}") from None
        except OSError as exc:
            raise OrchestratorError(f"control API unreachable: {exc}") from None

    def _act(self, name: str, body: dict[str, Any], timeout: float) -> ActionResult:
        answer = self._call("POST", f"/actions/{name}", body, timeout + _SLACK_S)
        return ActionResult(**answer["result"])

    def rolling_restart(self, service: str, *, timeout: float = 300.0) -> ActionResult:
        return self._act("rolling_restart", {"service": service, "timeout": timeout}, timeout)

    def kill(self, service: str, count: int = 1) -> ActionResult:
        return self._act("kill", {"service": service, "count": count}, 120.0)

    def drop_connections(self, service: str) -> ActionResult:
        return self._act("drop_connections", {"service": service}, 30.0)

    def scale(self, service: str, replicas: int, *, timeout: float = 120.0) -> ActionResult:
        body = {"service": service, "replicas": replicas, "timeout": timeout}
        return self._act("scale", body, timeout)

    def wait_ready(self, service: str, *, timeout: float = 120.0) -> None:
        self._call(
            "POST", "/actions/wait_ready", {"service": service, "timeout": timeout}, timeout + 5
        )

    def replicas(self) -> list[dict[str, Any]]:
        """Every replica process of the lab now (for the target monitor)."""
        return self._call("GET", "/replicas", None, 5.0)["replicas"]

    def events(self, after: int = 0) -> list[dict[str, Any]]:
        """The lab's events after sequence number ``after``."""
        return self._call("GET", f"/events?after={after}", None, 5.0)["events"]
