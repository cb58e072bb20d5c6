"""Where client connections come from: spread over 127.0.0.0/8 for loopback targets (a block
per worker), or over ``--source-addresses``; asserted on the target's own view of its peers.

The target's peers are read from the kernel (psutil's view of the target process's sockets):
what the server sees, not what the client meant to do.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_users_support import (
    REPO,
    harness_command,
    harness_env,
    locust_cluster,
    parse_output,
    shared_targets,
    stream,
    wait_for_peers,
    write_locustfile,
)

module_targets = pytest.fixture(scope="module", name="module_targets")(shared_targets)

SSE_ONLY = """
from wirelab.users import SseUser

class Sse(SseUser):
    pass
"""

LOCUSTFILE = """
from wirelab.users import SseUser, WebSocketFeedUser

class Sse(SseUser):
    fixed_count = 6

class Ws(WebSocketFeedUser):
    fixed_count = 6
"""


@pytest.fixture
def harness() -> Iterator:
    """Start the harness in the background; always stopped (by pid) after the test."""
    started: list[subprocess.Popen] = []

    def start(locustfile: Path, users: int, duration: float, args: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(
            harness_command(locustfile, users=users, duration=duration, args=args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=harness_env(),
            cwd=REPO,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def finish(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=60)
    return parse_output(stdout, stderr, process.returncode)


def test_clients_of_a_loopback_target_connect_from_distinct_addresses_in_127_8(
    module_targets, harness, tmp_path
) -> None:
    target = module_targets.start(["sse", "ws"], args=["--rate", "5"])
    ports = [target.ports["sse"], target.ports["ws"]]
    process = harness(
        write_locustfile(tmp_path, LOCUSTFILE),
        12,
        8,
        ["--sse-url", target.url("sse"), "--ws-url", target.url("ws")],
    )
    seen = wait_for_peers(target.process.pid, ports, 6)
    result = finish(process)
    everyone = [address for port in ports for address in seen[port]]
    assert len(everyone) == 12, seen
    # One address per connection (SSE and WS share the process's rotation), none the
    # kernel's default 127.0.0.1, all on loopback.
    assert len(set(everyone)) == 12, seen
    assert "127.0.0.1" not in everyone
    assert all(ipaddress.ip_address(address).is_loopback for address in everyone)
    for protocol in ("sse", "ws"):
        feed = stream(result, protocol, f"{protocol} deliver")
        assert feed["connect_failures"] == 0 and feed["delivered"] > 0, feed


def test_rest_and_polling_clients_of_a_loopback_target_spread_too(
    module_targets, harness, tmp_path
) -> None:
    target = module_targets.start("rest", args=["--rate", "5"])
    locustfile = write_locustfile(
        tmp_path,
        """
        from locust import constant
        from wirelab.users import LongPollUser, RestEchoUser

        class Echo(RestEchoUser):
            fixed_count = 3
            wait_time = constant(0.2)

        class Poll(LongPollUser):
            fixed_count = 3
        """,
    )
    process = harness(locustfile, 6, 6, ["--rest-url", target.url("rest")])
    seen = wait_for_peers(target.process.pid, [target.ports["rest"]], 6)
    finish(process)
    addresses = seen[target.ports["rest"]]
    assert len(addresses) == 6 and len(set(addresses)) == 6, addresses
    assert all(address.startswith("127.1.0.") for address in addresses), addresses


def test_source_addresses_option_pins_connections_to_the_given_network(
    module_targets, harness, tmp_path
) -> None:
    target = module_targets.start("sse", args=["--rate", "5"])
    locustfile = write_locustfile(tmp_path, SSE_ONLY)
    # A /30 has two host addresses: six connections rotate over exactly those.
    process = harness(
        locustfile,
        6,
        6,
        ["--sse-url", target.url("sse"), "--source-addresses", "127.42.0.0/30"],
    )
    seen = wait_for_peers(target.process.pid, [target.ports["sse"]], 6)
    finish(process)
    assert sorted(seen[target.ports["sse"]]) == ["127.42.0.1"] * 3 + ["127.42.0.2"] * 3


def test_a_source_address_that_is_not_one_stops_the_run_with_exit_2(tmp_path) -> None:
    completed = subprocess.run(
        [
            sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "sse.py"),
            "--headless", "-u", "1", "-t", "2s", "--sse-url", "http://127.0.0.1:1",
            "--source-addresses", "10.0.0.1,not-an-address",
        ],
        capture_output=True, text=True, timeout=60, env=harness_env(), cwd=REPO, check=False,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "--source-addresses: 'not-an-address' is not an address or CIDR" in completed.stderr


def test_each_worker_of_a_distributed_run_connects_from_its_own_address_block(
    module_targets, tmp_path
) -> None:
    """A real Locust master and two workers (ZeroMQ on loopback): the target sees the
    first worker's clients from 127.1.0.0/24 and the second's from 127.1.1.0/24."""
    target = module_targets.start("sse", args=["--rate", "5"])
    master_args = ["-u", "4", "-r", "20", "-t", "30s", "--sse-url", target.url("sse")]
    with locust_cluster(
        write_locustfile(tmp_path, SSE_ONLY), tmp_path, workers=2, master_args=master_args
    ) as master:
        seen = wait_for_peers(target.process.pid, [target.ports["sse"]], 4, timeout=45)
    addresses = seen[target.ports["sse"]]
    assert len(addresses) == 4, (addresses, master.log_tail())
    blocks = {ipaddress.ip_network(f"{address}/24", strict=False) for address in addresses}
    assert blocks == {
        ipaddress.ip_network("127.1.0.0/24"),
        ipaddress.ip_network("127.1.1.0/24"),
    }, addresses
