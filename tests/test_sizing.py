"""Capacity planning: workers, cores and memory from the measured per-core figures."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from wirelab.sizing import (
    BASE_RSS_MIB,
    FIGURES,
    REQUESTS_PER_CORE,
    TARGET_CPU,
    SizingError,
    plan_connections,
    plan_requests,
)


def test_a_busy_feed_is_planned_by_cpu_with_every_worker_under_the_generator_bound() -> None:
    plan = plan_connections(100_000, 10, protocol="ws")
    cores = 100_000 * 10 * FIGURES["ws"].cpu_ms_per_event / 1000
    assert plan.bound_by == "cpu"
    assert plan.workers == math.ceil(cores / TARGET_CPU)
    assert plan.cpu_per_worker <= TARGET_CPU < 0.85
    assert plan.connections_per_worker * plan.workers >= 100_000


def test_a_quiet_feed_under_a_small_file_limit_is_planned_by_the_file_limit() -> None:
    plan = plan_connections(100_000, 0.1, protocol="sse", open_files=20_000)
    assert plan.bound_by == "file limit"
    assert plan.workers == 6  # 100,000 over 19,872 descriptors each
    assert plan.connections_per_worker <= 20_000
    expected = 6 * BASE_RSS_MIB + 100_000 * FIGURES["sse"].kib_per_connection / 1024
    assert plan.memory_mib == pytest.approx(expected)


def test_grpc_streams_share_channels_so_the_file_limit_counts_connections_not_users() -> None:
    plan = plan_connections(100_000, 0.0, protocol="grpc", open_files=2_000)
    assert plan.workers == 1  # 1,000 shared channels fit one worker's limit
    many = plan_connections(100_000, 0.0, protocol="ws", open_files=2_000)
    assert many.workers == math.ceil(100_000 / (2_000 - 128))


def test_requests_are_planned_from_the_per_core_rate() -> None:
    plan = plan_requests(50_000)
    assert plan.workers == math.ceil(50_000 / REQUESTS_PER_CORE / TARGET_CPU)
    assert plan.requests_per_worker * plan.workers == pytest.approx(50_000)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: plan_connections(0, 1), "at least 1"),
        (lambda: plan_connections(10, -1), "0 or more"),
        (lambda: plan_connections(10, 1, protocol="mqtt"), "unknown protocol"),
        (lambda: plan_requests(0), "more than 0"),
    ],
)
def test_a_request_that_cannot_be_planned_says_why(call, message) -> None:
    with pytest.raises(SizingError, match=message):
        call()


def wirelab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wirelab", *args], capture_output=True, text=True, check=False
    )


def test_the_command_prints_the_plan_and_the_chart_value_to_set() -> None:
    result = wirelab("capacity", "--connections", "100000", "--events", "10/s")
    assert result.returncode == 0, result.stderr
    plan = plan_connections(100_000, 10)
    assert f"workers: {plan.workers} " in result.stdout
    assert f"--set workers.replicas={plan.workers}" in result.stdout
    assert "benchmarks/results/client-cost.json" in result.stdout


def test_the_command_refuses_a_bad_rate_with_one_line_and_exit_2() -> None:
    result = wirelab("capacity", "--connections", "10", "--events", "1/x")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not a rate" in result.stderr
