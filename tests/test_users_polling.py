"""Short and long polling users against the real REST target's ``/events``."""

from __future__ import annotations

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
from wirelab.users import LongPollUser, ShortPollUser

class Short(ShortPollUser):
    poll_interval = 0.01  # faster than the feed: many polls come back empty (304)
    fixed_count = 1

class Long(LongPollUser):
    long_poll_wait = 1
    fixed_count = 1

class FromSeqOne(ShortPollUser):
    # Polls since seq 1, long out of a 20-event retention: must count a reset.
    poll_name = "poll resume"
    start_since = 1
    poll_interval = 0.1
    fixed_count = 1
"""


def test_polling_users_see_every_event_count_empty_polls_and_resets(
    module_targets, tmp_path
) -> None:
    target = module_targets.start("rest", args=["--rate", "50", "--retention", "20"])
    time.sleep(0.6)  # seq 1 falls out of the 20-event retention
    result = run_users(
        write_locustfile(tmp_path, LOCUSTFILE),
        users=3,
        duration=2.5,
        args=["--rest-url", target.url("rest")],
    )
    assert_no_failures(result)
    for name in ("poll short", "poll long"):
        polls = stat(result, "poll", name)
        feed = stream(result, "poll", name)
        assert polls["count"] > 5, name
        assert feed["delivered"] > 50, (name, feed)
        assert (feed["gaps"], feed["missing"], feed["duplicates"], feed["resets"]) == (0, 0, 0, 0)
        # Freshness lag: one sample per delivered event, fired as "<name> deliver" too.
        assert feed["lag"]["n"] == feed["delivered"]
        assert stat(result, "poll", f"{name} deliver")["count"] == feed["delivered"]
    # Polling faster than the feed publishes wastes requests; each one is marked.
    assert result["contexts"]["poll short"]["empty_poll"] > 5
    resumed = stream(result, "poll", "poll resume")
    assert resumed["resets"] == 1 and resumed["reset_lost"] > 0 and resumed["gaps"] == 0


def test_a_poll_user_reports_a_gap_when_the_server_skips_a_seq(module_targets, tmp_path) -> None:
    # TEST HOOK --test-skip-seq: the target never hands seq 5 to any client.
    target = module_targets.start("rest", args=["--rate", "100", "--test-skip-seq", "5"])
    locustfile = write_locustfile(
        tmp_path,
        """
        from wirelab.users import ShortPollUser

        class Replay(ShortPollUser):
            start_since = 0
            poll_interval = 0.05
        """,
    )
    result = run_users(locustfile, users=1, duration=1.2, args=["--rest-url", target.url("rest")])
    feed = stream(result, "poll", "poll short")
    assert (feed["gaps"], feed["missing"], feed["duplicates"]) == (1, 1, 0)
