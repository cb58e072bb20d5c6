"""Reported latency against ground truth: a target with a known service-time mix, and a target
that stalls, driven by real distributed runs (``wirelab run``: a master and two workers).

The truth is what the target measured itself: how long it held each request (its ``/stats``
``test_hooks`` figures), so the only gap the tolerance has to cover is the client's own
overhead on loopback.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.test_run import only_run_dir, target_stats, wirelab_run
from wirelab.targets.test_hooks import HookError, LatencyMix, StallPlan


def test_latency_mix_parses_and_hands_out_exact_shares() -> None:
    mix = LatencyMix.parse("85%:5ms, 15%:50ms")
    assert mix.parts == ((0.85, 0.005), (0.15, 0.05))
    delays = [mix.delay(n) for n in range(1000)]
    # Deterministic and within a few requests of the shares for any prefix length.
    assert abs(delays.count(0.05) - 150) <= 2
    assert abs(delays[:137].count(0.05) - 0.15 * 137) <= 2


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("85%:5ms,10%:50ms", "add up to 95%"),
        ("85:5ms,15%:50ms", "not SHARE%:DURATION"),
        ("85%:soon,15%:50ms", "not a duration"),
        ("100%:2m", "at most 60 s"),
    ],
)
def test_a_bad_latency_mix_is_named(text: str, needle: str) -> None:
    with pytest.raises(HookError, match=needle):
        LatencyMix.parse(text)


def test_stall_plan_stalls_the_end_of_each_period() -> None:
    plan = StallPlan.parse("1s/5s")
    assert plan.remaining(0.5) == 0.0
    assert plan.remaining(3.99) == 0.0
    assert plan.remaining(4.25) == pytest.approx(0.75)
    assert plan.remaining(9.5) == pytest.approx(0.5)
    with pytest.raises(HookError, match="shorter than the period"):
        StallPlan.parse("5s/1s")
    with pytest.raises(HookError, match="STALL/PERIOD"):
        StallPlan.parse("1s")


def _scenario(directory, *, rate: int, users: int, duration: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "echo.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: echo-truth
            duration: {duration}
            workers: 2
            spawn_rate: 50
            rate: {rate}
            users:
              rest_echo: {users}
            """
        )
    )
    return str(path)


def _echo_row(run_dir) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    (row,) = [row for row in summary["requests"] if row["name"] == "rest POST /echo"]
    return row


def _run_echo(targets, tmp_path, name: str, hooks: list[str], duration: str) -> tuple[dict, dict]:
    """One distributed open-model run of REST echo (120/s, 8 users, 2 workers) against a
    target started with ``hooks``: the summary's echo row and the target's ``/stats``."""
    running = targets.start("rest", args=["--rate", "0", *hooks])
    scenario = _scenario(tmp_path / name, rate=120, users=8, duration=duration)
    result = wirelab_run(
        "--scenario", scenario, "--rest-url", running.url("rest"), "--no-progress",
        report_dir=tmp_path / name / "reports",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return _echo_row(only_run_dir(tmp_path / name / "reports")), target_stats(running, "rest")


def test_reported_percentiles_match_an_injected_latency_mix(targets, tmp_path) -> None:
    """85% of requests held 5 ms, 15% held 50 ms: p50 ~5, p90 and p99 ~50. Reported p50, p90
    and p99 (latency from the intended start, and service time) lie, within 2% + 1 ms, between
    what the target held at that percentile and that plus the loopback round trip's own
    percentile.

    The truth a client can see is what the target held each request (its own exact
    ``test_hooks`` percentiles) plus the loopback round trip, which is not the load tool's
    to remove: on a 2-core VM a request that wakes two idle processes costs 0.5-1.5 ms. So a
    first run against a target with no hook measures that round trip at each percentile, in
    the same conditions. The round trip is not the held time's twin, though: the requests at
    the mix's p99 are the slowest-held ones with an ordinary round trip, not the slowest round
    trips too, so held + round-trip p99 is a ceiling, not the figure (a CI run on a noisy host
    measured a 4.2 ms round-trip p99 in the baseline and 0.7 ms over the held p99 in the mix).
    A client cannot see a request answered sooner than the target held it, which is the floor."""
    base_row, _ = _run_echo(targets, tmp_path, "baseline", [], "8s")
    row, stats = _run_echo(targets, tmp_path, "mix", ["--test-latency", "85%:5ms,15%:50ms"], "15s")
    truth = stats["test_hooks"]
    held = truth["held_ms"]
    assert row["failures"] == 0 and base_row["failures"] == 0
    # Every request the run reported is one the target held, and the mix was applied.
    assert row["count"] == truth["requests"] == held["count"] >= 1000
    assert 4.5 <= held["p50"] <= 7 and 49.5 <= held["p90"] <= 55
    for kind in ("service_ms", "latency_ms"):
        for quantile in ("p50", "p90", "p99"):
            floor = held[quantile]
            ceiling = held[quantile] + base_row[kind][quantile]
            slack = 0.02 * ceiling + 1.0
            reported = row[kind][quantile]
            assert floor - slack <= reported <= ceiling + slack, (
                kind, quantile, row[kind], held, base_row,
            )  # fmt: skip
    assert row.get("dropped", 0) == 0


def test_open_model_p99_shows_a_stalling_server_that_the_closed_model_figure_hides(
    targets, tmp_path
) -> None:
    """The target stops answering for 1 s of every 5 s; starts keep coming at 100/s. Latency
    from the intended start puts about a tenth of the requests above 500 ms; service time
    (from the actual send, what a closed loop measures) sees only the few requests that were
    on the wire when a stall began, under 1% of them, so its p99 stays low. The report says
    why in one sentence, in the HTML and on the terminal."""
    running = targets.start("rest", args=["--rate", "0", "--test-stall", "1s/5s"])
    # One user per worker: two lanes, so at most two requests per stall are on the wire.
    scenario = _scenario(tmp_path, rate=100, users=2, duration="16s")
    result = wirelab_run(
        "--scenario", scenario, "--rest-url", running.url("rest"), "--no-progress",
        report_dir=tmp_path / "reports",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "reports")
    row = _echo_row(run_dir)
    hooks = target_stats(running, "rest")["test_hooks"]
    assert hooks["stalled"] >= 2  # the run met at least one stall (16 s, one every 5 s)
    assert row["failures"] == 0 and row["count"] >= 1000
    assert row["latency_ms"]["p99"] >= 500, row
    assert row["service_ms"]["p99"] < 500, row
    # Starts that met a stall waited for a lane instead of being dropped.
    assert row["dropped"] <= 0.01 * row["count"], row
    html = (run_dir / "report.html").read_text()
    assert "hides such stalls (coordinated omission)" in html
    assert "<th>svc p99</th>" in html
    assert "coordinated omission" in result.stdout and "svc p99" in result.stdout
