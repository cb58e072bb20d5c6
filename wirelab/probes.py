"""Asking a target whether it is ready: ``/readyz`` over HTTP, the gRPC health service for gRPC.

A target serving TLS (``--tls-cert``) is probed over TLS: ``tls=True``, with ``ca_file`` to
verify it. Without ``ca_file`` an HTTP probe skips verification (it asks "is it serving?",
not "is it who it says?"); gRPC cannot skip it, so a gRPC probe over TLS needs ``ca_file``.

:func:`wait_for_targets` waits for targets given as the users' URLs (``https://``, ``wss://``
and ``grpcs://`` mean TLS): what a cluster master does before its run, and what
``wirelab targets check`` (the chart's ``helm test``) does.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit


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


TLS_SCHEMES = frozenset({"https", "wss", "grpcs"})


def uses_tls(url: str) -> bool:
    """A target URL the users reach over TLS (``https://``, ``wss://``, ``grpcs://``)."""
    return url.split(",", 1)[0].strip().partition("://")[0].lower() in TLS_SCHEMES


def host_port(protocol: str, url: str) -> tuple[str, int]:
    """Where the first replica of a target URL listens.

    gRPC's is ``[grpcs://]host:port`` or ``[grpcs://]dns:///name:port`` (a headless Service).

    Raises:
        ValueError: no port where one is needed.
    """
    first = url.split(",", 1)[0].strip()
    if protocol == "grpc":
        for scheme in ("grpcs://", "grpc://", "https://", "http://"):
            first = first.removeprefix(scheme)
        first = first.removeprefix("dns:///").removeprefix("dns:").removeprefix("ipv4:")
        host, _, port = first.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"not host:port: {url!r}")
        return host, int(port)
    parts = urlsplit(first if "://" in first else f"http://{first}")
    default = 443 if parts.scheme in {"https", "wss"} else 80
    return parts.hostname or "", parts.port or default


def _probe_ca(protocol: str, tls: bool, ca_file: str | None) -> str | None:
    """What a probe trusts: the users' CA bundle. gRPC cannot skip verification, so without
    one it trusts the public roots (certifi's), as the gRPC users then do."""
    if tls and protocol == "grpc" and not ca_file:
        import certifi  # noqa: PLC0415 - only a TLS gRPC probe without a CA bundle needs it

        return certifi.where()
    return ca_file


def wait_for_targets(
    urls: Mapping[str, str],
    timeout: float,
    *,
    ca_file: str | None = None,
    poll_s: float = 1.0,
    on_ready: Callable[[str], None] | None = None,
) -> list[str]:
    """Wait until every target of ``urls`` (protocol → URL) answers its readiness check, at
    most ``timeout`` seconds; returns the protocols that never did, sorted.

    Each target is asked in a thread of its own, every ``poll_s``, so one whose name takes a
    resolver's whole timeout to fail (a Service nobody backs, a DNS server that does not
    answer) delays neither the others nor the verdict: the wait ends at ``timeout``, or once
    every target was asked at least once, whichever is later. A target at an ``https://``,
    ``wss://`` or ``grpcs://`` URL is asked over TLS, trusting ``ca_file``.
    ``on_ready(protocol)`` is called (in the caller's thread) as each one answers.
    """
    targets = {
        protocol: (*host_port(protocol, url), uses_tls(url)) for protocol, url in urls.items()
    }
    answers: queue.SimpleQueue[tuple[str, bool | Exception]] = queue.SimpleQueue()
    stop = threading.Event()

    def ask(protocol: str, host: str, port: int, tls: bool) -> None:
        try:
            ca = _probe_ca(protocol, tls, ca_file)
            while not stop.is_set():
                ready = target_ready(host, protocol, port, tls=tls, ca_file=ca)
                answers.put((protocol, ready))
                if ready:
                    return
                stop.wait(poll_s)
        except Exception as exc:  # raised in the caller's thread, as a sequential probe would
            answers.put((protocol, exc))

    for protocol, (host, port, tls) in targets.items():
        threading.Thread(
            target=ask, args=(protocol, host, port, tls), name=f"probe-{protocol}", daemon=True
        ).start()
    deadline = time.monotonic() + timeout
    waiting, unasked = set(targets), set(targets)
    try:
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0 and not unasked:
                break
            try:
                protocol, ready = answers.get(timeout=left if left > 0 else None)
            except queue.Empty:
                continue
            if isinstance(ready, Exception):
                raise ready
            unasked.discard(protocol)
            if ready:
                waiting.discard(protocol)
                if on_ready is not None:
                    on_ready(protocol)
    finally:
        stop.set()  # a probe still waiting on its resolver ends with its daemon thread
    return sorted(waiting)
