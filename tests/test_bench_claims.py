"""The claims table's verdicts: held, not held, depends."""

from __future__ import annotations

from wirelab_bench.claims import CLAIMS, build_claims, verdict
from wirelab_bench.stats import summarize


def test_a_ratio_that_reaches_the_claim_is_held():
    assert verdict("ratio", 3.0, summarize([2.9, 3.4, 3.1])) == "held"
    assert verdict("ratio", 3.0, summarize([2.5])) == "held"  # within 25%


def test_a_ratio_in_the_right_direction_but_too_small_depends():
    assert verdict("ratio", 3.0, summarize([1.3, 1.5, 1.4])) == "depends"


def test_a_ratio_whose_median_does_not_go_the_claimed_way_is_not_held():
    assert verdict("ratio", 3.0, summarize([0.7, 0.9, 1.0])) == "not held"
    assert verdict("ratio", 3.0, summarize([0.8, 0.98, 1.04])) == "not held"
    assert verdict("ratio", 0.5, summarize([1.2, 1.1])) == "not held"


def test_a_ratio_claimed_below_one_is_held_when_low_enough():
    assert verdict("ratio", 0.5, summarize([0.4, 0.55])) == "held"


def test_a_condition_turns_a_reached_claim_into_depends():
    assert verdict("ratio", 1.6, summarize([2.0]), depends_on="generator bound") == "depends"


def test_range_and_at_least_claims():
    assert verdict("range", (2.0, 14.0), summarize([4.0]), tolerance=0.0) == "held"
    assert verdict("range", (2.0, 14.0), summarize([40.0]), tolerance=0.0) == "not held"
    assert verdict("at_least", 95.0, summarize([97.0]), tolerance=0.0) == "held"
    assert verdict("at_least", 95.0, summarize([10.0]), tolerance=0.0) == "not held"
    assert verdict("at_least", 95.0, summarize([10.0]), tolerance=0.0, depends_on="rate") == (
        "depends"
    )
    assert verdict("ratio", 3.0, summarize([None])) == "no data"


def test_claims_table_computes_a_ratio_per_repetition():
    reps = [
        {"request": {"rest_keepalive": {"p50_ms": 6.0}, "ws": {"p50_ms": 2.0}}},
        {"request": {"rest_keepalive": {"p50_ms": 4.0}, "ws": {"p50_ms": 2.0}}},
    ]
    rows = {row["claim"]: row for row in build_claims(reps)}
    p50 = rows["REST P50 12 ms vs WebSockets P50 4 ms"]
    assert (p50["measured"], p50["min"], p50["max"], p50["n"]) == (2.5, 2.0, 3.0, 2)
    assert p50["verdict"] == "held"
    assert rows["REST P99 45 ms vs WebSockets P99 15 ms"]["verdict"] == "no data"
    assert len(rows) == len(CLAIMS)


def test_an_inconclusive_condition_makes_even_the_wrong_way_depend():
    # Both variants at the top of the ladder: 4,000 / 4,000 says nothing about capacity.
    at_top = summarize([1.0, 0.999, 1.0])
    assert verdict("ratio", 1.65, at_top, depends_on="top of the ladder") == "not held"
    assert (
        verdict("ratio", 1.65, at_top, depends_on="top of the ladder", inconclusive=True)
        == "depends"
    )
    # Without a reason the flag changes nothing.
    assert verdict("ratio", 1.65, at_top, inconclusive=True) == "not held"


def test_rate_ceilings_found_by_nobody_do_not_refute_the_throughput_claim():
    top = {"max_sustained_rps": 4000.0, "limited_by": "ladder end"}
    reps = [{"request": {"ws": dict(top), "rest_keepalive": dict(top)}}] * 3
    rows = {row["claim"]: row for row in build_claims(reps)}
    row = rows["~140k ops/s WebSockets vs ~85k ops/s REST"]
    assert (row["measured"], row["verdict"]) == (1.0, "depends")
    assert row["note"] == "a variant reached the top of the rate ladder"
