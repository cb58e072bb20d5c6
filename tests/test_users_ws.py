"""WebSocketUser against a real WebSocket target: round trips, the feed, resets, gaps, auth."""

from __future__ import annotations

import os
import time

import pytest

from tests.test_users_support import (
    assert_no_failures,
    run_users,
    shared_targets,
    stat,
    stream,
    write_locustfile,
)

module_targets = pytest.fixture(scope="module", name="module_targets")(shared_targets)

LOCUSTFILE = """
from locust import constant
from wirelab.users import WebSocketUser

class Client(WebSocketUser):
    wait_time = constant(0.05)

class FromSeqOne(WebSocketUser):
    # Subscribes since seq 1, long out of a 20-event retention: must count a reset.
    stream_name = "ws resume"
    start_since = 1
    fixed_count = 1
    wait_time = constant(1)
"""


def test_ws_user_round_trips_and_delivers_every_event_and_counts_a_reset(
    module_targets, tmp_path
) -> None:
    target = module_targets.start("ws", args=["--rate", "200", "--retention", "20"])
    time.sleep(0.3)
    result = run_users(
        write_locustfile(tmp_path, LOCUSTFILE),
        users=3,
        duration=2.5,
        args=["--ws-url", target.url("ws"), "--payload-size", "100"],
    )
    assert_no_failures(result)
    assert stat(result, "ws", "ws echo")["count"] > 20
    assert stat(result, "ws", "ws ping")["count"] > 3
    assert stat(result, "ws", "ws connect")["count"] == 3
    feed = stream(result, "ws", "ws deliver")
    assert feed["delivered"] > 200 and feed["connects"] == 2
    assert (feed["gaps"], feed["missing"], feed["duplicates"], feed["out_of_order"]) == (0, 0, 0, 0)
    resumed = stream(result, "ws", "ws resume")
    assert resumed["resets"] == 1 and resumed["reset_lost"] > 0 and resumed["gaps"] == 0


def test_ws_user_reports_a_gap_when_the_server_skips_a_seq(module_targets, tmp_path) -> None:
    # TEST HOOK --test-skip-seq: the target never hands seq 5 to any client.
    target = module_targets.start("ws", args=["--rate", "100", "--test-skip-seq", "5"])
    locustfile = write_locustfile(
        tmp_path,
        """
        from wirelab.users import WebSocketUser

        class Replay(WebSocketUser):
            start_since = 0
        """,
    )
    result = run_users(locustfile, users=1, duration=1.5, args=["--ws-url", target.url("ws")])
    feed = stream(result, "ws", "ws deliver")
    assert (feed["gaps"], feed["missing"], feed["duplicates"]) == (1, 1, 0)
    assert stat(result, "ws", "ws deliver")["failures"] == 1


def test_ws_user_sends_its_token_as_a_bearer_subprotocol(module_targets, tmp_path) -> None:
    target = module_targets.start(
        "ws", args=["--rate", "20"], env={**os.environ, "WIRELAB_TARGET_TOKEN": "s3cret"}
    )
    locustfile = write_locustfile(
        tmp_path,
        """
        from locust import constant
        from wirelab.users import WebSocketUser

        class Client(WebSocketUser):
            wait_time = constant(0.2)
        """,
    )
    url = ["--ws-url", target.url("ws")]
    authorised = run_users(
        locustfile, users=1, duration=1, args=url, env={"WIRELAB_TOKEN": "s3cret"}
    )
    assert_no_failures(authorised)
    assert stat(authorised, "ws", "ws echo")["count"] > 0
    refused = run_users(locustfile, users=1, duration=1, args=url, env={"WIRELAB_TOKEN": "wrong"})
    assert stat(refused, "ws", "ws connect")["failures"] >= 1
    assert stream(refused, "ws", "ws deliver")["connect_failures"] >= 1


def test_ws_feed_user_answers_the_servers_pings_and_keeps_its_connection(
    module_targets, tmp_path
) -> None:
    """The target pings every 0.2 s and drops a client that has not answered within 0.4 s:
    three seconds without a disconnect is some fifteen pongs sent from the reading loop."""
    target = module_targets.start("ws", args=["--rate", "20", "--heartbeat", "0.2s"])
    locustfile = write_locustfile(
        tmp_path,
        """
        from wirelab.users import WebSocketFeedUser

        class Feed(WebSocketFeedUser):
            pass
        """,
    )
    result = run_users(locustfile, users=2, duration=3, args=["--ws-url", target.url("ws")])
    feed = stream(result, "ws", "ws deliver")
    assert (feed["connects"], feed["disconnects"], feed["connect_failures"]) == (2, 0, 0), feed
    assert feed["delivered"] > 2 * 20 and feed["gaps"] == 0, feed


def test_an_echo_cut_by_the_servers_going_away_is_sent_again_and_counted(
    module_targets, tmp_path
) -> None:
    # TEST HOOK --test-away-every 4: every 4th echo gets a close 1001 instead of its reply,
    # as when a request crosses a draining server's close on the wire.
    target = module_targets.start(
        "ws",
        args=[
            "--rate",
            "20",
            "--test-away-every",
            "4",
            "--retry-ms",
            "20",
            "--retry-jitter-ms",
            "20",
        ],
    )
    locustfile = write_locustfile(
        tmp_path,
        """
        from locust import constant, task
        from wirelab.users import WebSocketUserBase

        class Echoes(WebSocketUserBase):
            wait_time = constant(0.05)

            @task
            def echo_task(self):
                self.echo()

        class OneShot(WebSocketUserBase):
            # Not idempotent: a request the server went away from is a failure, not resent.
            echo_name = "ws once"
            wait_time = constant(0.05)
            fixed_count = 1

            @task
            def once(self):
                self.round_trip("echo", self.echo_name, {"payload": "x"}, idempotent=False)
        """,
    )
    result = run_users(locustfile, users=2, duration=3, args=["--ws-url", target.url("ws")])
    echoes = result["requests"]["ws ws echo"]
    assert echoes["count"] > 8 and echoes["failures"] == 0, result["errors"]
    assert echoes["retried"] >= 1, echoes
    once = result["requests"]["ws ws once"]
    assert once["failures"] >= 1 and once["retried"] == 0, once
    assert "went away (1001)" in str(result["errors"]), result["errors"]
    assert stream(result, "ws", "ws deliver")["goaways"] > echoes["retried"]
