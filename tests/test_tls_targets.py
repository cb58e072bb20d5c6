"""TLS at the targets: HTTPS (REST, SSE), WSS and gRPC over TLS from certificate files.

A throwaway CA and a server certificate for 127.0.0.1/localhost are made with ``openssl`` in
a temp dir (the ``pki`` fixture of ``tests/fixtures/pki.py``). Each protocol does one round
trip with the CA verified, and a client that does not trust the CA is refused by its own
verification (the handshake fails).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import websocket

from wirelab.processes import ManagedProcess, free_port
from wirelab.targets.proto import wirelab_pb2 as pb
from wirelab.targets.proto import wirelab_pb2_grpc as pb_grpc


def tls_ready(port: int, ca: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=1) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1"),
    ):
        return True


@pytest.fixture(scope="module")
def tls_target(pki: Path, tmp_path_factory: pytest.TempPathFactory):
    ports = {name: free_port() for name in ("rest", "sse", "ws", "grpc")}
    argv = [
        sys.executable, "-m", "wirelab", "targets", "serve", *ports,
        "--ports", ",".join(f"{name}={port}" for name, port in ports.items()),
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
        "--rate", "20",
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("tls") / "target.log"
    process = ManagedProcess(argv, name="tls-target", log_path=log).start()
    try:
        process.wait_ready(
            lambda: all(tls_ready(port, pki / "ca.pem") for port in ports.values()), timeout=20
        )
        yield ports
    finally:
        process.stop(grace=10)


def https_get(port: int, path: str, context: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data or (path == "/stream" and b"data:" not in data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


@pytest.mark.parametrize("protocol", ["rest", "sse"])
def test_https_round_trip_with_verification_and_refusal_without_the_ca(
    tls_target: dict[str, int], pki: Path, protocol: str
) -> None:
    trusted = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    path = "/healthz" if protocol == "rest" else "/stream"
    response = https_get(tls_target[protocol], path, trusted)
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    if protocol == "sse":
        assert b"data:" in response
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(tls_target[protocol], path, ssl.create_default_context())


def test_wss_round_trip_with_verification_and_refusal_without_the_ca(
    tls_target: dict[str, int], pki: Path
) -> None:
    url = f"wss://127.0.0.1:{tls_target['ws']}/ws"
    ws = websocket.create_connection(url, timeout=5, sslopt={"ca_certs": str(pki / "ca.pem")})
    ws.send(json.dumps({"type": "echo", "id": 1, "ts": 0, "payload": "over tls"}))
    assert json.loads(ws.recv())["payload"] == "over tls"
    ws.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        websocket.create_connection(url, timeout=5, sslopt={"cert_reqs": ssl.CERT_REQUIRED})


def test_grpc_tls_round_trip_with_verification_and_refusal_without_the_ca(
    tls_target: dict[str, int], pki: Path
) -> None:
    address = f"127.0.0.1:{tls_target['grpc']}"
    credentials = grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes())
    with grpc.secure_channel(address, credentials) as channel:
        reply = pb_grpc.LabStub(channel).Echo(pb.EchoRequest(id="t", payload=b"tls"), timeout=5)
        assert reply.payload == b"tls"
    # The system roots do not include the throwaway CA: the handshake fails, no call is served.
    with grpc.secure_channel(address, grpc.ssl_channel_credentials()) as channel:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.LabStub(channel).Echo(pb.EchoRequest(id="u"), timeout=3)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # And a plaintext client gets nothing from the TLS port either.
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError):
        pb_grpc.LabStub(channel).Echo(pb.EchoRequest(id="v"), timeout=3)


def test_rest_users_verify_certificates_unless_told_not_to() -> None:
    # Locust's FastHttpUser skips verification by default; wirelab's REST users do not.
    # (A subprocess: importing Locust monkey-patches this test process with gevent.)
    code = "from wirelab.users.rest import RestUserBase; print(RestUserBase.insecure)"
    env = {key: value for key, value in os.environ.items() if key != "WIRELAB_TLS_INSECURE"}
    for extra, expected in (({}, "False"), ({"WIRELAB_TLS_INSECURE": "1"}, "True")):
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
            check=True, env={**env, **extra},
        )  # fmt: skip
        assert result.stdout.strip().splitlines()[-1] == expected
