"""A stream's window ends when the run's time is up: events read while the users are being
stopped move the resume point but are not recorded (their lag is the teardown's), while an
anomaly is recorded whenever it is seen; and the harness reports the collector's passes
while the users ran. Real Locust, in a child process."""

from __future__ import annotations

from tests.test_users_support import run_users, stream, write_locustfile
from wirelab.metrics.histogram import LogHistogram

LOCUSTFILE = """
import gc

from locust import User, constant, task
from wirelab.reconnect import Immediate
from wirelab.users.stream import StreamSession, now_us


class Teardown(User):
    wait_time = constant(0.05)

    def on_start(self):
        self.session = StreamSession(self.environment, "test", "test deliver", policy=Immediate())
        self.seq = 0

    def _next(self, lag_us, skip=0):
        self.seq += 1 + skip
        self.session.event(self.seq, now_us() - lag_us)

    @task
    def live(self):
        self._next(1_000)  # 1 ms late
        gc.collect(1)

    def on_stop(self):
        # Read while the users are being stopped: 5 s of lag that is the teardown's...
        self._next(5_000_000)
        # ...and a lost event, which is loss whenever it is seen.
        self._next(5_000_000, skip=1)
"""


def _max_ms(series: dict) -> float:
    return LogHistogram.from_wire(series["lag"]).quantiles([1.0])[1.0] / 1000


def test_events_read_while_users_stop_are_left_out_but_gaps_are_not(tmp_path):
    result = run_users(write_locustfile(tmp_path, LOCUSTFILE), users=2, duration=1.0, args=[])
    series = stream(result, "test", "test deliver")
    # Each user: ~20 in-order events while running (recorded, 1 ms), one in order while
    # stopping (not recorded) and one after a hole (recorded as a gap, with its lag).
    assert series["gaps"] == 2 and series["missing"] == 2
    assert series["lag"]["n"] == series["delivered"] > 10
    # Exactly two samples of 5 s (the gaps): below the top 2.5 everything is 1 ms.
    lags = LogHistogram.from_wire(series["lag"])
    below_top = 1 - 2.5 / lags.count
    assert lags.quantiles([below_top])[below_top] / 1000 < 2
    assert _max_ms(series) > 4_000
    # The collector's passes while the users ran, per generation, each timed.
    assert result["gc"]["gen1"]["passes"] >= 10
    assert result["gc"]["gen1"]["max_ms"] > 0
