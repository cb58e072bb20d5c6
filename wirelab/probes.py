"""Asking a target whether it is ready: ``/readyz`` over HTTP, the gRPC health service for gRPC."""

from __future__ import annotations

import urllib.request


def http_ready(host: str, port: int, timeout: float = 1.0) -> bool:
    """``GET /readyz`` answers 200."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def grpc_ready(host: str, port: int, timeout: float = 1.0, service: str = "") -> bool:
    """``grpc.health.v1.Health/Check`` says SERVING."""
    import grpc  # noqa: PLC0415 - gRPC only when a gRPC target is probed
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def target_ready(host: str, protocol: str, port: int) -> bool:
    """The target's own readiness signal for ``protocol``."""
    return grpc_ready(host, port) if protocol == "grpc" else http_ready(host, port)
