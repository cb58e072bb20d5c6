"""GrpcUser against a real gRPC target: Echo, Chat, the Subscribe stream, resets and gaps."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.test_users_support import (
    REPO,
    assert_no_failures,
    harness_command,
    harness_env,
    parse_output,
    run_users,
    shared_targets,
    stat,
    stream,
    wait_for_peers,
    write_locustfile,
)

module_targets = pytest.fixture(scope="module", name="module_targets")(shared_targets)

LOCUSTFILE = """
from locust import constant
from wirelab.users import GrpcUser

class Client(GrpcUser):
    wait_time = constant(0.05)

class FromSeqOne(GrpcUser):
    # Subscribes since seq 1, long out of a 20-event retention: must count a reset.
    stream_name = "grpc resume"
    start_since = 1
    fixed_count = 1
    wait_time = constant(1)
"""


def test_grpc_user_calls_echo_and_chat_and_delivers_every_event(module_targets, tmp_path) -> None:
    target = module_targets.start("grpc", args=["--rate", "200", "--retention", "20"])
    time.sleep(0.3)
    result = run_users(
        write_locustfile(tmp_path, LOCUSTFILE),
        users=3,
        duration=2.5,
        args=["--grpc-target", target.url("grpc")],
    )
    assert_no_failures(result)
    assert stat(result, "grpc", "grpc Echo")["count"] > 20
    assert stat(result, "grpc", "grpc Chat")["count"] > 5
    feed = stream(result, "grpc", "grpc deliver")
    assert feed["delivered"] > 200 and feed["connects"] == 2
    assert (feed["gaps"], feed["missing"], feed["duplicates"], feed["out_of_order"]) == (0, 0, 0, 0)
    resumed = stream(result, "grpc", "grpc resume")
    assert resumed["resets"] == 1 and resumed["reset_lost"] > 0 and resumed["gaps"] == 0


def test_grpc_user_reports_a_gap_when_the_server_skips_a_seq(module_targets, tmp_path) -> None:
    # TEST HOOK --test-skip-seq: the target never hands seq 5 to any client.
    target = module_targets.start("grpc", args=["--rate", "100", "--test-skip-seq", "5"])
    locustfile = write_locustfile(
        tmp_path,
        """
        from wirelab.users import GrpcUser

        class Replay(GrpcUser):
            start_since = 0
        """,
    )
    result = run_users(
        locustfile, users=1, duration=1.5, args=["--grpc-target", target.url("grpc")]
    )
    feed = stream(result, "grpc", "grpc deliver")
    assert (feed["gaps"], feed["missing"], feed["duplicates"]) == (1, 1, 0)


FEED = """
from wirelab.users import GrpcFeedUser

class Feed(GrpcFeedUser):
    pass
"""


@pytest.mark.parametrize(
    ("per_channel", "connections"), [(None, 1), ("1", 6)], ids=["shared", "one-per-user"]
)
def test_grpc_feed_users_share_a_connection_unless_each_is_given_its_own(
    module_targets, tmp_path, per_channel, connections
) -> None:
    """Six subscribers: one HTTP/2 connection carries all six streams by default (up to 100
    per connection); ``--grpc-streams-per-channel 1`` gives each user a TCP connection of its
    own. Counted at the target, from its own sockets."""
    target = module_targets.start("grpc", args=["--rate", "50"])
    args = ["--grpc-target", target.url("grpc")]
    if per_channel is not None:
        args += ["--grpc-streams-per-channel", per_channel]
    with subprocess.Popen(
        # Long enough that the second look below still sees the run's connections when the
        # users were slow to start on a crowded machine.
        harness_command(write_locustfile(tmp_path, FEED), users=6, duration=10, args=args),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=harness_env(), cwd=REPO,
    ) as harness:  # fmt: skip
        try:
            seen = wait_for_peers(target.process.pid, [target.ports["grpc"]], connections)
            time.sleep(1.0)  # had there been more connections, they would be up by now
            seen = wait_for_peers(target.process.pid, [target.ports["grpc"]], connections)
            stdout, stderr = harness.communicate(timeout=60)
        finally:
            if harness.poll() is None:
                harness.kill()
    result = parse_output(stdout, stderr, harness.returncode)
    assert len(seen[target.ports["grpc"]]) == connections, seen
    feed = stream(result, "grpc", "grpc deliver")
    assert feed["connects"] == 6 and feed["connect_failures"] == 0, feed
    assert feed["delivered"] > 6 * 50 and (feed["gaps"], feed["duplicates"]) == (0, 0), feed
