"""The open model: starts at the arrival rate, latency from the intended start, dropped starts
counted, and the rate split across the workers of a real distributed run."""

from __future__ import annotations

import csv
import time

import pytest

from tests.test_users_support import (
    assert_no_failures,
    locust_cluster,
    run_users,
    shared_targets,
    stat,
    write_locustfile,
)
from wirelab.processes import ManagedProcess

module_targets = pytest.fixture(scope="module", name="module_targets")(shared_targets)

RATE = 40
DURATION = 3.0


def test_open_model_starts_each_class_at_the_rate_and_times_from_the_intended_start(
    module_targets, tmp_path
) -> None:
    target = module_targets.start(["rest", "ws", "grpc"], args=["--rate", "0"])
    locustfile = write_locustfile(
        tmp_path,
        """
        from wirelab.users import GrpcUserBase, RestUserBase, WebSocketUserBase

        # 2 users x 4 lanes per class: room for 200 ms calls at 40/s on a busy machine.
        class Rest(RestUserBase):
            fixed_count = 2
            open_concurrency = 4

        class Ws(WebSocketUserBase):
            subscribe_feed = False
            fixed_count = 2
            open_concurrency = 4

        class Grpc(GrpcUserBase):
            subscribe_feed = False
            fixed_count = 2
            open_concurrency = 4
        """,
    )
    result = run_users(
        locustfile,
        users=6,
        duration=DURATION,
        args=[
            "--rate", f"{RATE}/s",
            "--rest-url", target.url("rest"),
            "--ws-url", target.url("ws"),
            "--grpc-target", target.url("grpc"),
        ],
    )  # fmt: skip
    assert_no_failures(result)
    expected = RATE * DURATION
    for protocol, name in (("rest", "rest POST /echo"), ("ws", "ws echo"), ("grpc", "grpc Echo")):
        count = stat(result, protocol, name)["count"]
        dropped = result["requests"].get(f"{protocol} {name}", {}).get("dropped", 0)
        # Every start at the rate either ran or was counted as dropped: none vanished, and
        # the arrivals did not slow down to what the server could take.
        assert 0.8 * expected <= count + dropped <= 1.05 * expected, (name, count, dropped)
        assert dropped <= 0.1 * expected, (name, count, dropped)  # lanes enough to keep up
        # Every open-model request carries its service time (from the actual send) beside
        # the latency from the intended start; the closed-model tasks never ran.
        assert result["contexts"][name]["service_time_s"] == count
    assert "rest POST /items" not in {entry["name"] for entry in result["stats"].values()}


def test_open_model_counts_dropped_starts_instead_of_closing_the_loop(
    module_targets, tmp_path
) -> None:
    target = module_targets.start("rest", args=["--rate", "0"])
    locustfile = write_locustfile(
        tmp_path,
        """
        from wirelab.users import RestUserBase

        class SlowEcho(RestUserBase):
            # 300 ms of service time (the target's delay_ms test hook) on 2 lanes: at most
            # ~6.7 starts/s can be served, so most of the 20/s must be dropped, and counted.
            abstract = True
            fixed_count = 2

            def open_operation(self, intended):
                self.call(
                    "POST", "/echo", self.open_name, body=b'{"delay_ms": 300}',
                    intended=intended,
                )

        class Narrow(SlowEcho):
            open_name = "rest slow echo, 2 lanes"
            open_concurrency = 1

        class Wide(SlowEcho):
            open_name = "rest slow echo, 16 lanes"
            open_concurrency = 8
        """,
    )
    result = run_users(
        locustfile,
        users=4,
        duration=DURATION,
        args=["--rate", "20/s", "--rest-url", target.url("rest")],
    )
    assert_no_failures(result)
    offered = 20 * DURATION
    narrow = result["schedulers"]["Narrow"]
    served = stat(result, "rest", "rest slow echo, 2 lanes")
    assert narrow["lanes"] == 0 and narrow["dropped_busy"] > 0.4 * offered
    # Starts that found both lanes busy waited for one (timed from their intended start)
    # rather than being dropped at once; what was still waiting at the stop was counted.
    assert narrow["waited"] > 0 and narrow["waiting"] == 0
    assert 0.8 * offered <= narrow["started"] + narrow["dropped_busy"] + narrow["dropped_late"]
    assert result["requests"]["rest rest slow echo, 2 lanes"]["dropped"] == (
        narrow["dropped_busy"] + narrow["dropped_late"]
    )
    assert served["median_ms"] >= 300
    wide = result["schedulers"]["Wide"]
    assert wide["dropped_busy"] == 0
    assert wide["started"] + wide["dropped_late"] >= 0.8 * offered


def test_a_distributed_run_splits_the_rate_across_workers(module_targets, tmp_path) -> None:
    """Master + 2 worker processes, --rate 30/s in total: about 30/s arrive, not 60/s."""
    target = module_targets.start("rest", args=["--rate", "0"])
    locustfile = write_locustfile(
        tmp_path,
        """
        from wirelab.users import RestUserBase

        class Echo(RestUserBase):
            pass
        """,
    )
    run_time = 4
    master_args = [
        "-u", "4", "-r", "4", "-t", f"{run_time}s", "--rate", "30/s",
        "--rest-url", target.url("rest"), "--csv", str(tmp_path / "run"),
        "--exit-code-on-error", "0",
    ]  # fmt: skip
    with locust_cluster(locustfile, tmp_path, workers=2, master_args=master_args) as master:
        deadline_ok = _wait_exit(master, 40)
    assert deadline_ok, master.log_tail()
    assert master.returncode == 0, master.log_tail()
    rows = {row["Name"]: row for row in csv.DictReader((tmp_path / "run_stats.csv").open())}
    count = int(rows["rest POST /echo"]["Request Count"])
    assert int(rows["rest POST /echo"]["Failure Count"]) == 0
    # Without the split each worker would run 30/s (~240 in all); a busy machine may drop a
    # few late starts, so the lower bound is loose.
    assert 0.5 * 30 * run_time <= count <= 1.15 * 30 * run_time, count
    assert rows["rest POST /echo"]["Type"] == "rest"


def _wait_exit(process: ManagedProcess, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process.alive and time.monotonic() < deadline:
        time.sleep(0.1)
    return not process.alive
