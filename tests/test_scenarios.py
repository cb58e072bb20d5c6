"""Scenario files: built-ins load, user files validate with messages that name the key."""

from __future__ import annotations

import pytest

from wirelab.scenarios import ScenarioError, builtin_names, load_scenario, parse_scenario


def test_builtin_scenarios_load_and_cover_every_protocol() -> None:
    assert {"smoke", "steady", "ramp", "soak"} <= set(builtin_names())
    smoke = load_scenario("smoke")
    assert smoke.protocols == ["rest", "sse", "ws", "grpc"]
    assert 20 <= smoke.duration <= 60
    assert smoke.thresholds


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: x\nusers: {ws: 1}\nduraton: 5s", "unknown key 'duraton'"),
        ("name: x\nusers: {mqtt: 1}", "users.mqtt: unknown user kind"),
        ("name: x\nusers: {ws: -1}", "users.ws: must be from 0"),
        ("name: x\nusers: {ws: 1}\nduration: soon", "duration: not a duration"),
        ("name: x\nusers: {ws: 1}\nthresholds: ['ws:p99<<5']", "thresholds[0]"),
        ("name: x\nusers: {ws: 0}", "users: at least one"),
        ("users: {ws: 1}", "name: required"),
        ("name: x\nusers: {ws: 1}\nrate: fast", "rate: not a rate"),
        ("name: [unclosed", "not valid YAML"),
        ("- a list", "a scenario is a mapping"),
    ],
)
def test_bad_scenarios_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="my.yaml")
    assert problem in str(caught.value)
    assert str(caught.value).startswith("my.yaml")


def test_users_rescale_in_proportion_and_protocols_filter() -> None:
    scenario = load_scenario("smoke")
    scenario.scale_users(100)
    assert scenario.total_users == 100
    assert scenario.users["sse"] == 2 * scenario.users["poll_short"]
    scenario.select_protocols(["ws", "poll"])
    assert set(scenario.users) == {"ws", "poll_short", "poll_long"}
    assert scenario.protocols == ["rest", "ws"]
    with pytest.raises(ScenarioError, match="unknown protocol"):
        scenario.select_protocols(["mqtt"])


def test_toml_and_rates(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nrate = "30000/m"\n[users]\nrest = 3\n')
    scenario = load_scenario(str(path))
    assert scenario.rate == 500
    assert scenario.users == {"rest": 3}
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario(str(tmp_path / "missing.yaml"))
