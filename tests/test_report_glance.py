"""A run read at a glance: the verdict and headline figures, thresholds one row per expression
in a stable order, long polls' hold apart from latency, and the terminal in the report's order.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys

import pytest

from tests.test_report_html import at, results, summary
from wirelab.exitcodes import EXIT_GENERATOR_BOUND, EXIT_INCOMPLETE, EXIT_OK, EXIT_THRESHOLD_FAILED
from wirelab.metrics.series import RequestSeries
from wirelab.report.glance import HELD_REQUESTS, group_thresholds, headline, verdict_word
from wirelab.report.html import CHART_SECTIONS, HOLD_CHART, chart_series, render_report
from wirelab.report.summary import build_summary
from wirelab.report.terminal import format_terminal_summary
from wirelab.thresholds import evaluate, parse_threshold

NAMES = [f"rest GET /r{i}" for i in range(14)]


def verdict_rows(failing: dict[str, float] | None = None) -> list[dict]:
    """``*:error_rate<1%`` over 14 names (``failing``: name → error rate), then two more."""
    failing = failing or {}
    rows = []
    for name in NAMES:
        rate = failing.get(name, 0.0)
        rows.append(
            {"expression": "*:error_rate<1%", "subject": name, "metric": "error_rate",
             "observed": rate, "limit": 0.01, "passed": rate < 0.01,
             "detail": f"{rate:.4%} < 1.0000%"}
        )  # fmt: skip
    rows.append(
        {"expression": "sse:lost==0", "subject": "sse", "metric": "lost", "observed": 0.0,
         "limit": 0.0, "passed": True, "detail": "0 == 0"}
    )  # fmt: skip
    rows.append(
        {"expression": "ws echo:p99<50ms", "subject": "ws echo", "metric": "p99",
         "observed": 12.0, "limit": 50.0, "passed": True, "detail": "12.00 ms < 50 ms"}
    )  # fmt: skip
    return rows


def full_summary(**overrides) -> dict:
    base = summary(
        thresholds=verdict_rows(),
        requests=[
            request_row("rest", "rest POST /items", count=90, failures=1, p99=12.5),
            request_row("rest", "rest GET /items/{id}", count=100, p99=4.0),
            request_row("poll", "poll long", count=40, p99=61.0),
            request_row("poll", "poll short", count=10, p99=3.0),
            request_row("ws", "ws echo", count=60, p99=2.5),
        ],
        streams=[
            stream_row("ws", "ws deliver", delivered=500, lag_p99=4.5),
            stream_row("sse", "sse deliver", delivered=480, missing=3, reset_lost=2, lag_p99=9.0),
        ],
    )
    return {**base, **overrides}


def request_row(protocol: str, name: str, *, count: int, p99: float, failures: int = 0) -> dict:
    latency = dict.fromkeys(("p50", "p90", "p95", "p99", "p999", "max", "mean"), p99 / 2)
    latency["p99"] = p99
    return {"name": name, "protocol": protocol, "count": count, "failures": failures,
            "error_rate": failures / count, "rps": 1.0, "bytes": 0, "latency_ms": latency,
            "errors": {}}  # fmt: skip


def stream_row(protocol: str, name: str, *, delivered: int, lag_p99: float, **counts) -> dict:
    row = {"name": name, "protocol": protocol, "delivered": delivered}
    for key in ("gaps", "missing", "duplicates", "out_of_order", "resets", "reset_lost",
                "connects", "disconnects", "reconnects", "connect_failures", "goaways",
                "empty_polls", "connected_peak"):  # fmt: skip
        row[key] = counts.get(key, 0)
    row["lag_ms"] = {"p50": lag_p99 / 3, "p99": lag_p99, "max": lag_p99}
    row["reconnect_ms"] = {"p50": None, "p99": None}
    return row


# -- thresholds --------------------------------------------------------------------------------


def test_thresholds_group_by_expression_in_the_order_written_whatever_order_verdicts_came():
    rows = verdict_rows({"rest GET /r7": 0.05, "rest GET /r3": 0.02})
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    groups = group_thresholds(shuffled)
    # The order of first appearance is the order written (evaluate keeps it); subjects are
    # sorted, so any arrival order of the same verdicts reads the same.
    assert [g.expression for g in group_thresholds(rows)] == [
        "*:error_rate<1%", "sse:lost==0", "ws echo:p99<50ms"
    ]  # fmt: skip
    every = next(g for g in groups if g.expression == "*:error_rate<1%")
    assert [row["subject"] for row in every.subjects] == [
        "rest GET /r3", "rest GET /r7", *sorted(set(NAMES) - {"rest GET /r3", "rest GET /r7"})
    ]  # fmt: skip
    assert every.worst["subject"] == "rest GET /r7"  # furthest over the limit
    assert (every.failed, every.passed) == (2, False)
    assert group_thresholds(verdict_rows())[0].worst_subject == "all 14"  # a tie has no worst


@pytest.mark.parametrize(
    ("expression", "observed", "worst"),
    [
        ("x:p99<50ms", {"a": 10.0, "b": 40.0, "c": 20.0}, "b"),  # closest to the limit
        ("x:rps>100", {"a": 150.0, "b": 120.0, "c": 300.0}, "b"),
        ("x:gaps==0", {"a": 0.0, "b": 3.0, "c": 1.0}, "b"),
    ],
)
def test_the_worst_subject_is_the_one_nearest_or_furthest_past_its_limit(
    expression, observed, worst
):
    threshold = parse_threshold(expression)
    rows = [
        {"expression": expression, "subject": name, "observed": value,
         "limit": threshold.value, "passed": False, "detail": ""}
        for name, value in observed.items()
    ]  # fmt: skip
    assert group_thresholds(rows)[0].worst["subject"] == worst


def test_summary_json_lists_the_verdicts_in_the_same_order_from_run_to_run():
    thresholds = [parse_threshold(t) for t in ("*:count>0", "ws:count>0")]
    series = {("ws", n): RequestSeries("ws", n, count=1) for n in ("ws b", "ws a", "ws c")}
    reordered = dict(reversed(list(series.items())))

    def listed(requests) -> list[tuple[str, str]]:
        verdicts = evaluate(thresholds, requests, {}, duration_s=1.0)
        built = build_summary(
            run_id="r", scenario="s", duration_s=1.0, results=None, verdicts=verdicts,
            incomplete=[], exit_code=0, open_model=False,
        )  # fmt: skip
        return [(row["expression"], row["subject"]) for row in built["thresholds"]]

    assert listed(series) == listed(reordered) == [
        ("*:count>0", "ws a"), ("*:count>0", "ws b"), ("*:count>0", "ws c"), ("ws:count>0", "ws")
    ]  # fmt: skip


# -- the header ----------------------------------------------------------------------------


def test_headline_figures_are_what_a_reviewer_wants_first():
    glance = headline(full_summary())
    assert (glance.requests, glance.failures) == (300, 1)
    assert glance.error_rate == pytest.approx(1 / 300)
    assert (glance.delivered, glance.lost) == (980, 5)  # lost: missing and lost to resets
    worst = {item.protocol: item for item in glance.worst}
    assert list(worst) == ["rest", "sse", "ws", "poll"]  # the protocols' usual order
    assert (worst["rest"].request, worst["rest"].request_p99_ms) == ("rest POST /items", 12.5)
    # Long polls wait for news by design: never the "worst latency" of polling.
    assert (worst["poll"].request, worst["poll"].request_p99_ms) == ("poll short", 3.0)
    assert glance.held == ["poll long"]
    assert (worst["sse"].stream, worst["sse"].lag_p99_ms) == ("sse deliver", 9.0)
    assert glance.generator is None


@pytest.mark.parametrize(
    ("code", "word", "css"),
    [
        (EXIT_OK, "PASSED", "pass"),
        (EXIT_THRESHOLD_FAILED, "FAILED", "fail"),
        (EXIT_GENERATOR_BOUND, "GENERATOR-BOUND", "bound"),
        (EXIT_INCOMPLETE, "INCOMPLETE", "incomplete"),
    ],
)
def test_the_reports_header_carries_the_verdict_of_every_exit_code(code, word, css):
    page = render_report(full_summary(exit_code=code), None)
    assert verdict_word(code) == word
    assert f"<span class='verdict {css}'>{word}</span>" in page
    assert page.index("class=glance") < page.index("<h2>Thresholds</h2>")


def test_the_header_shows_the_generator_verdict_and_what_each_action_did():
    generator = {
        "verdict": "generator-bound", "cpu_max": 99.0, "loop_lag_p99_ms": 31.0,
        "share_affected": 0.4, "reasons": ["worker-1: CPU above 85% in 40% of intervals"],
    }  # fmt: skip
    deploy = {
        "actions": [
            {"action": "rolling_restart", "service": "all", "at_s": 10.0, "duration_s": 23.4,
             "ok": True, "protocols": {"sse": {"clients_back_99_s": 1.2},
                                        "ws": {"clients_back_99_s": None}}},
            {"action": "drop_connections", "service": "ws", "at_s": 30.0, "ok": False,
             "error": "no replica"},
        ]
    }  # fmt: skip
    run = full_summary(exit_code=EXIT_GENERATOR_BOUND, generator=generator, deploy=deploy)
    page = render_report(run, None)
    header = page[page.index("class=glance") : page.index("</header>")]
    assert "generator-bound" in header and "CPU max 99.0% of a core" in header
    assert "40% of intervals over a bound" in header
    assert "rolling_restart all at 10.0s took 23.4s; 99% of clients back: sse 1.2s" in header
    assert "drop_connections ws at 30.0s failed: no replica" in header
    assert "<div class='card bad-card'><div class=label>deploys &amp; storms</div>" in header
    assert "the generator was the bottleneck: worker-1: CPU above 85%" in header
    glance = headline(run)
    assert glance.reason.startswith("every threshold held, but the generator")


def test_thresholds_table_has_one_row_per_expression_and_the_rest_behind_a_disclosure():
    page = render_report(full_summary(thresholds=verdict_rows({"rest GET /r7": 0.05})), None)
    rows = re.findall(r"<tr class=(pass|fail)-row>", page)
    assert rows == ["fail", "pass", "pass"]
    assert "<details><summary>1 of 14 failed</summary>" in page
    assert page.count("rest GET /r") == 14 + 1  # every subject once, the worst once more
    assert page.index("*:error_rate&lt;1%") < page.index("sse:lost==0")


# -- long polls' hold ------------------------------------------------------------------------


def chart(title: str):
    return next(c for _, charts in CHART_SECTIONS for c in charts if c.title == title)


def test_long_polls_hold_is_drawn_apart_from_latency():
    points = [
        at(1, "requests", {"protocol": "poll", "name": "poll long"}, p50=50.0, p99=58.0, max=70.0),
        at(1, "requests", {"protocol": "poll", "name": "poll short"}, p50=1.0, p99=2.0),
        at(1, "requests", {"protocol": "ws", "name": "ws echo"}, p50=0.5, p99=3.0),
    ]
    run = results(points)
    assert chart_series(chart("Latency p99 per protocol"), run) == {
        "poll p99": [(0.0, 2.0)], "ws p99": [(0.0, 3.0)]
    }  # fmt: skip
    assert "poll long p99" not in chart_series(chart("Latency p99 per request"), run)
    assert chart_series(chart(HOLD_CHART), run) == {
        "poll long p50": [(0.0, 50.0)], "poll long p99": [(0.0, 58.0)],
        "poll long max": [(0.0, 70.0)],
    }  # fmt: skip
    page = render_report(full_summary(), run)
    assert f'aria-label="{HOLD_CHART}"' in page
    assert "poll long <span class=tag>held</span>" in page


def test_held_requests_are_the_long_poll_users_requests():
    # In a child: importing the users imports Locust, which patches its interpreter.
    names = subprocess.run(
        [sys.executable, "-c", "from wirelab.users.polling import LongPollUser, ShortPollUser;"
         "print(LongPollUser.poll_name); print(ShortPollUser.poll_name)"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split("\n")  # fmt: skip
    assert names[0] in HELD_REQUESTS
    assert names[1] not in HELD_REQUESTS


# -- the terminal --------------------------------------------------------------------------


def test_terminal_summary_reads_in_the_reports_order_with_one_line_per_expression():
    text = format_terminal_summary(
        full_summary(exit_code=EXIT_THRESHOLD_FAILED,
                     thresholds=verdict_rows({"rest GET /r7": 0.05, "rest GET /r3": 0.02}))
    )  # fmt: skip
    lines = text.splitlines()
    assert lines[1].startswith("run test-run: FAILED (exit code 1): 1 of 3 thresholds failed")
    order = [
        text.index("requests 300 (1 failed"),
        text.index("worst p99: rest 12.5 ms"),
        text.index("\nthresholds\n"),
        text.index("FAIL *:error_rate<1%"),
        text.index("ok   sse:lost==0"),
        text.index("\nname "),
        text.index("\nstream "),
        text.rindex("run test-run: FAILED (exit code 1)"),
    ]
    assert order == sorted(order)
    expression_lines = [line for line in lines if re.match(r"  (ok  |FAIL) ", line)]
    assert len(expression_lines) == 3
    assert "rest GET /r7: 5.0000% < 1.0000% (2 of 14 failed)" in expression_lines[0]
    assert "         also rest GET /r3: 2.0000% < 1.0000%" in lines
    assert "poll long (held)" in text


def test_requests_sent_again_after_a_drain_are_named_in_the_terminal_and_the_report():
    plain = full_summary()
    assert "Sent again" not in format_terminal_summary(plain)
    assert "Sent again" not in render_report(plain, None)
    retried = full_summary()
    retried["requests"][-1]["retried"] = 3  # ws echo
    line = "Sent again after the server went away before replying (a drain): ws echo 3."
    assert line in format_terminal_summary(retried)
    assert line in render_report(retried, None)
