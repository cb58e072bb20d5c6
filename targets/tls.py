"""TLS for the targets: HTTPS (REST, SSE), WSS and gRPC over TLS, from certificate files.

The files come from the command line (``--tls-cert``/``--tls-key``), which in the chart are
a mounted Secret. Without them the targets speak plaintext, the local default.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

__all__ = ["grpc_server_credentials", "server_ssl_context"]


def server_ssl_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """A server context (TLS 1.2+) for ``cert``/``key``; ``None`` when TLS is off."""
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def grpc_server_credentials(cert: str, key: str) -> grpc.ServerCredentials:
    """gRPC's own credentials object from the same files."""
    return grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())])
