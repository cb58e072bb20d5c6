"""The load users over TLS: each protocol verifies the target's certificate unless told not to.

One target serves REST, SSE, WebSocket and gRPC over TLS with a certificate from a throwaway
CA (the ``pki`` fixture); the real user classes run against it in the harness:

- trusting the CA (``--ca-file``): every protocol round-trips, no failures;
- default verification (the system roots do not hold the CA): every connection fails on
  certificate verification and nothing succeeds;
- ``--tls-insecure`` (here from the environment): REST, polling, SSE and WS skip
  verification and succeed, with one warning; gRPC cannot skip, so it verifies against
  ``--ca-file`` and, without one, the run stops before users spawn.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.targets import RunningTarget, TargetFactory
from tests.test_users_support import (
    REPO,
    assert_no_failures,
    harness_env,
    run_users,
    shared_targets,
    stat,
    stream,
    write_locustfile,
)

module_targets = pytest.fixture(scope="module", name="module_targets")(shared_targets)

LOCUSTFILE = """
from locust import constant
from wirelab.users import GrpcUser, RestEchoUser, ShortPollUser, SseUser, WebSocketUser

class Rest(RestEchoUser):
    fixed_count = 1
    wait_time = constant(0.1)

class Poll(ShortPollUser):
    fixed_count = 1
    poll_interval = 0.2

class Sse(SseUser):
    fixed_count = 1

class Ws(WebSocketUser):
    fixed_count = 1
    wait_time = constant(0.1)

class Grpc(GrpcUser):
    fixed_count = 1
    wait_time = constant(0.1)
"""

#: What fails on an untrusted certificate, in the words of OpenSSL / BoringSSL.
VERIFY_FAILED = "CERTIFICATE_VERIFY_FAILED"
INSECURE_WARNING = "TLS certificate verification is OFF"


@pytest.fixture(scope="module")
def tls_target(module_targets: TargetFactory, pki: Path) -> RunningTarget:
    """All four protocols over TLS in one target process, probed over TLS."""
    return module_targets.start(
        ["rest", "sse", "ws", "grpc"],
        args=["--rate", "20", "--tls-cert", str(pki / "server.pem"),
              "--tls-key", str(pki / "server.key")],
        ca_file=pki / "ca.pem",
    )  # fmt: skip


def url_args(target: RunningTarget) -> list[str]:
    """The https://, wss:// and grpcs:// addresses of the target."""
    assert target.url("rest").startswith("https://"), target.url("rest")
    return [
        "--rest-url", target.url("rest"), "--sse-url", target.url("sse"),
        "--ws-url", target.url("ws"), "--grpc-target", target.url("grpc"),
    ]  # fmt: skip


def run(
    target: RunningTarget,
    tmp_path: Path,
    extra: list[str],
    *,
    classes: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    return run_users(
        write_locustfile(tmp_path, LOCUSTFILE),
        users=len(classes) if classes else 5,
        duration=2.5,
        args=[*url_args(target), *extra],
        user_classes=classes,
        env=env,
    )


def errors_of(result: dict[str, Any], name: str) -> list[str]:
    return [error["error"] for error in result["errors"] if error["name"] == name]


def assert_round_trips(result: dict[str, Any], protocols: set[str]) -> None:
    """Every protocol in ``protocols`` did real work over TLS, and nothing failed."""
    assert_no_failures(result)
    if "rest" in protocols:
        assert stat(result, "rest", "rest POST /echo")["count"] > 0
        assert stat(result, "poll", "poll short")["count"] > 0
    if "sse" in protocols:
        assert stream(result, "sse", "sse deliver")["delivered"] > 0
    if "ws" in protocols:
        assert stat(result, "ws", "ws echo")["count"] > 0
        assert stream(result, "ws", "ws deliver")["delivered"] > 0
    if "grpc" in protocols:
        assert stat(result, "grpc", "grpc Echo")["count"] > 0
        assert stream(result, "grpc", "grpc deliver")["delivered"] > 0


def test_every_protocol_round_trips_when_the_ca_file_is_trusted(
    tls_target: RunningTarget, pki: Path, tmp_path: Path
) -> None:
    result = run(tls_target, tmp_path, ["--ca-file", str(pki / "ca.pem")])
    assert_round_trips(result, {"rest", "sse", "ws", "grpc"})
    assert INSECURE_WARNING not in result["stderr"]


def test_every_protocol_refuses_the_server_by_default(
    tls_target: RunningTarget, tmp_path: Path
) -> None:
    # No --ca-file: the default roots do not hold the throwaway CA.
    result = run(tls_target, tmp_path, [])
    for request_type, name in (
        ("rest", "rest POST /echo"),
        ("poll", "poll short"),
        ("sse", "sse connect"),
        ("ws", "ws connect"),
        ("grpc", "grpc Echo"),
    ):
        entry = stat(result, request_type, name)
        assert entry["count"] > 0, name
        assert entry["failures"] == entry["count"], f"{name} succeeded: {entry}"
        errors = errors_of(result, name)
        assert errors, f"{name}: no error recorded"
        assert all(VERIFY_FAILED in error for error in errors), (name, errors)
    # Not a single stream came up, so nothing was delivered.
    for protocol in ("sse", "ws", "grpc"):
        feed = stream(result, protocol, f"{protocol} deliver")
        assert (feed["connects"], feed["delivered"]) == (0, 0), (protocol, feed)
        assert feed["connect_failures"] > 0, (protocol, feed)
    # And no request of any kind got an answer.
    assert all(entry["failures"] == entry["count"] for entry in result["stats"].values())


def test_insecure_mode_skips_verification_and_warns_once(
    tls_target: RunningTarget, tmp_path: Path
) -> None:
    # From the environment, and without --ca-file: only skipping verification can succeed.
    result = run(
        tls_target, tmp_path, [], classes=["Rest", "Poll", "Sse", "Ws"],
        env={"WIRELAB_TLS_INSECURE": "1"},
    )  # fmt: skip
    assert_round_trips(result, {"rest", "sse", "ws"})
    assert result["stderr"].count(INSECURE_WARNING) == 1, result["stderr"][-2000:]


def test_grpc_in_insecure_mode_still_verifies_against_the_ca_file(
    tls_target: RunningTarget, pki: Path, tmp_path: Path
) -> None:
    # The CA from the environment this time, insecure from the command line.
    result = run(
        tls_target, tmp_path, ["--tls-insecure"], classes=["Grpc"],
        env={"WIRELAB_CA_FILE": str(pki / "ca.pem")},
    )  # fmt: skip
    assert_round_trips(result, {"grpc"})
    assert "gRPC over TLS still verifies certificates" in result["stderr"]


def test_grpc_over_tls_to_several_replicas_verifies_against_the_first_ones_name(
    tls_target: RunningTarget, module_targets: TargetFactory, pki: Path, tmp_path: Path
) -> None:
    # ``ipv4:a,b`` has no host name of its own: the first replica's stands for all.
    other = module_targets.start(
        "grpc",
        args=["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")],
        ca_file=pki / "ca.pem",
    )
    locustfile = write_locustfile(
        tmp_path,
        """
        from locust import constant
        from wirelab.users import GrpcUser

        class Grpc(GrpcUser):
            lb_policy = "round_robin"
            subscribe_feed = False
            wait_time = constant(0.05)
        """,
    )
    both = f"{tls_target.url('grpc')},{other.url('grpc')}"
    result = run_users(
        locustfile, users=2, duration=2, args=["--grpc-target", both, "--ca-file",
                                               str(pki / "ca.pem")],
    )  # fmt: skip
    assert_no_failures(result)
    assert stat(result, "grpc", "grpc Echo")["count"] > 0


def test_grpc_in_insecure_mode_without_a_ca_file_stops_before_users_spawn(
    tmp_path: Path,
) -> None:
    locustfile = write_locustfile(
        tmp_path,
        """
        from wirelab.users import GrpcUser

        class Grpc(GrpcUser):
            pass
        """,
    )
    completed = subprocess.run(  # noqa: PLW1510 - the exit code is the point
        [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", "1",
         "-t", "2s", "--grpc-target", "grpcs://127.0.0.1:9", "--tls-insecure"],
        capture_output=True, text=True, timeout=60, env=harness_env(), cwd=REPO,
    )  # fmt: skip
    assert "gRPC over TLS cannot skip certificate verification" in completed.stderr
    assert "--ca-file" in completed.stderr
    assert completed.returncode == 2, completed.stderr[-2000:]
