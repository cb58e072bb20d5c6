"""Reconnect policies: the delays each one gives, with a seeded RNG, and spec parsing."""

from __future__ import annotations

import random

import pytest

from wirelab.reconnect import (
    POLICIES,
    Decorrelated,
    Exponential,
    FullJitter,
    ReconnectPolicy,
    ServerHint,
)


def policy(spec: str, seed: int = 7) -> ReconnectPolicy:
    return ReconnectPolicy.from_spec(spec, rng=random.Random(seed))


def test_immediate_reconnects_at_once_and_ignores_hints() -> None:
    immediate = policy("immediate")
    assert [immediate.next_delay(n, hint_s=3.0) for n in range(5)] == [0.0] * 5


def test_fixed_waits_the_same_delay_every_time() -> None:
    fixed = policy("fixed:delay=250ms")
    assert [fixed.next_delay(n) for n in range(4)] == [0.25] * 4


def test_exponential_doubles_from_base_up_to_the_cap() -> None:
    exponential = policy("exponential:base=0.5,cap=5")
    assert [exponential.next_delay(n) for n in range(7)] == [0.5, 1, 2, 4, 5, 5, 5]
    assert exponential.next_delay(10_000) == 5  # no float overflow for huge attempts


def test_full_jitter_stays_within_zero_and_the_capped_exponential() -> None:
    jitter = policy("full_jitter:base=0.5,cap=4")
    for attempt in range(8):
        ceiling = min(4.0, 0.5 * 2**attempt)
        delays = [jitter.next_delay(attempt) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        # Jitter means spread: the delays cover most of the window, not one point.
        assert max(delays) - min(delays) > 0.8 * ceiling


def test_full_jitter_is_reproducible_with_a_seed() -> None:
    first = [policy("full_jitter", seed=42).next_delay(3) for _ in range(3)]
    second = [policy("full_jitter", seed=42).next_delay(3) for _ in range(3)]
    assert first == second
    expected = random.Random(42).uniform(0, min(30.0, 0.5 * 2**3))
    assert first[0] == expected


def test_decorrelated_jitter_grows_from_base_within_three_times_the_previous() -> None:
    decorrelated = policy("decorrelated:base=0.1,cap=3")
    previous = 0.1
    for attempt in range(30):
        delay = decorrelated.next_delay(attempt)
        assert 0.1 <= delay <= min(3.0, previous * 3) + 1e-12
        previous = delay
    assert max(decorrelated.next_delay(n) for n in range(50)) <= 3.0


def test_decorrelated_jitter_starts_over_after_a_success() -> None:
    decorrelated = policy("decorrelated:base=0.2,cap=30", seed=1)
    for attempt in range(12):
        decorrelated.next_delay(attempt)
    decorrelated.reset()
    assert decorrelated.next_delay(0) <= 0.6


def test_server_hint_honours_the_hint_and_caps_it() -> None:
    hinted = policy("server_hint:base=0.5,cap=10")
    assert hinted.next_delay(0, hint_s=1.7) == 1.7
    assert hinted.next_delay(5, hint_s=0.0) == 0.0
    assert hinted.next_delay(0, hint_s=3600) == 10  # a server cannot park clients for hours


def test_server_hint_falls_back_to_full_jitter_without_a_hint() -> None:
    hinted = policy("server_hint:base=0.5,cap=10", seed=3)
    reference = FullJitter(random.Random(3), base=0.5, cap=10)
    assert [hinted.next_delay(n) for n in range(6)] == [reference.next_delay(n) for n in range(6)]


@pytest.mark.parametrize("name", ["immediate", "fixed", "exponential", "decorrelated"])
def test_policies_other_than_server_hint_ignore_the_hint(name: str) -> None:
    assert policy(name, seed=5).next_delay(2, hint_s=9.0) == policy(name, seed=5).next_delay(2)


def test_spec_parsing_accepts_units_dashes_and_spaces() -> None:
    parsed = ReconnectPolicy.from_spec(" Full-Jitter : base = 500ms , cap = 1m ")
    assert isinstance(parsed, FullJitter)
    assert parsed.params == {"base": 0.5, "cap": 60.0}
    assert parsed.spec == "full_jitter:base=0.5,cap=60"
    assert isinstance(ReconnectPolicy.from_spec(parsed.spec), FullJitter)


def test_every_policy_builds_from_its_name_with_defaults() -> None:
    for name, policy_class in POLICIES.items():
        built = ReconnectPolicy.from_spec(name)
        assert type(built) is policy_class
        assert built.next_delay(0) >= 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "unknown reconnect policy"),
        ("jittery", "unknown reconnect policy 'jittery' (choose from: immediate, fixed"),
        ("full_jitter:base", "expected key=value, got 'base'"),
        ("full_jitter:=1", "expected key=value"),
        ("full_jitter:speed=2", "has no parameter 'speed' (it takes: base, cap)"),
        ("fixed:delay=soon", "delay='soon' is not a duration"),
        ("exponential:base=-1", "is not a duration"),
        ("exponential:base=5,cap=1", "base=5s is above cap=1s"),
        ("fixed:delay=2h", "outside 0..600s"),
        ("fixed:delay=1,delay=2", "delay given twice"),
        ("immediate:base=1", "has no parameter 'base' (it takes: no parameters)"),
    ],
)
def test_bad_specs_fail_with_a_message_that_names_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="reconnect policy") as raised:
        ReconnectPolicy.from_spec(spec)
    assert message in str(raised.value)


def test_copies_have_their_own_state_and_random_stream() -> None:
    original = Decorrelated(random.Random(9), base=0.1, cap=10)
    clone = original.copy()
    assert clone.params == original.params and clone is not original
    for attempt in range(5):
        clone.next_delay(attempt)
    assert original.next_delay(0) <= 0.3  # the clone's growth did not leak into the original


def test_exponential_and_server_hint_are_the_documented_classes() -> None:
    assert isinstance(policy("exponential"), Exponential)
    assert isinstance(policy("server_hint"), ServerHint)
