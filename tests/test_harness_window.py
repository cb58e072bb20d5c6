"""The harness reports the streams as they stood when the run's time was up, apart from
what users recorded while they were being stopped, and the collector's passes while the
users ran (real Locust, in a child process)."""

from __future__ import annotations

from tests.test_users_support import run_users, write_locustfile
from wirelab.metrics.histogram import LogHistogram

LOCUSTFILE = """
import gc

from locust import User, constant, task
from wirelab.metrics.recorder import recorder


class Teardown(User):
    wait_time = constant(0.05)

    @task
    def live(self):
        recorder().stream("test", "teardown").record_event("ok", 1_000)  # 1 ms
        gc.collect(1)

    def on_stop(self):
        # Read while the users are being stopped: 5 s of lag that is the teardown's.
        recorder().stream("test", "teardown").record_event("ok", 5_000_000)
"""


def _max_ms(wire: dict) -> float:
    return LogHistogram.from_wire(wire["lag"]).quantiles([1.0])[1.0] / 1000


def test_events_recorded_while_users_stop_are_left_out_of_the_window(tmp_path):
    result = run_users(write_locustfile(tmp_path, LOCUSTFILE), users=2, duration=1.0, args=[])
    whole = result["streams"]["test teardown"]
    until_stop = result["streams_until_stop"]["test teardown"]
    assert until_stop["delivered"] > 10
    assert whole["delivered"] >= until_stop["delivered"] + 2  # both on_stop events
    assert _max_ms(whole) > 4_000
    assert _max_ms(until_stop) < 2
    # The collector's passes while the users ran, per generation, each timed.
    assert result["gc"]["gen1"]["passes"] >= until_stop["delivered"]
    assert result["gc"]["gen1"]["max_ms"] > 0
