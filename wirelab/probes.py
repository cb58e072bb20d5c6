"""Asking a target whether it is ready: ``/readyz`` over HTTP, the gRPC health service for gRPC.

A target serving TLS (``--tls-cert``) is probed over TLS: ``tls=True``, with ``ca_file`` to
verify it. Without ``ca_file`` an HTTP probe skips verification (it asks "is it serving?",
not "is it who it says?"); gRPC cannot skip it, so a gRPC probe over TLS needs ``ca_file``.
"""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path


def _client_context(ca_file: str | Path | None) -> ssl.SSLContext:
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def http_ready(
    host: str,
    port: int,
    timeout: float = 1.0,
    *,
    tls: bool = False,
    ca_file: str | Path | None = None,
) -> bool:
    """``GET /readyz`` answers 200 (over https with ``tls``)."""
    scheme = "https" if tls else "http"
    context = _client_context(ca_file) if tls else None
    try:
        with urllib.request.urlopen(  # noqa: S310 - the scheme is http or https
            f"{scheme}://{host}:{port}/readyz", timeout=timeout, context=context
        ) as response:
            return response.status == 200
    except OSError:
        return False


def grpc_ready(
    host: str,
    port: int,
    timeout: float = 1.0,
    service: str = "",
    *,
    tls: bool = False,
    ca_file: str | Path | None = None,
) -> bool:
    """``grpc.health.v1.Health/Check`` says SERVING (over TLS trusting ``ca_file`` with ``tls``).

    Raises:
        ValueError: ``tls`` without ``ca_file`` (grpcio always verifies).
    """
    import grpc  # noqa: PLC0415 - gRPC only when a gRPC target is probed
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    address = f"{host}:{port}"
    if tls:
        if ca_file is None:
            raise ValueError("a gRPC probe over TLS needs ca_file: grpcio always verifies")
        credentials = grpc.ssl_channel_credentials(Path(ca_file).read_bytes())
        channel = grpc.secure_channel(address, credentials)
    else:
        channel = grpc.insecure_channel(address)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def target_ready(
    host: str,
    protocol: str,
    port: int,
    *,
    tls: bool = False,
    ca_file: str | Path | None = None,
) -> bool:
    """The target's own readiness signal for ``protocol`` (over TLS with ``tls``)."""
    if protocol == "grpc":
        return grpc_ready(host, port, tls=tls, ca_file=ca_file)
    return http_ready(host, port, tls=tls, ca_file=ca_file)
