"""Scenario files: built-ins load, user files validate with messages that name the key,
and the schema they are checked against is printed for editors."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from wirelab.capacity import GRPC_STREAMS_PER_CHANNEL_ENV
from wirelab.limits import HostLimits
from wirelab.plan import RunPlan
from wirelab.preflight import capacity_problems, client_source_addresses
from wirelab.reconnect import ReconnectPolicy
from wirelab.scenarios import ScenarioError, builtin_names, load_scenario, parse_scenario
from wirelab.source_addresses import SOURCE_ADDRESSES_ENV


def test_builtin_scenarios_load_and_cover_every_protocol() -> None:
    assert {"smoke", "steady", "ramp", "soak"} <= set(builtin_names())
    smoke = load_scenario("smoke")
    assert smoke.protocols == ["rest", "sse", "ws", "grpc"]
    assert 20 <= smoke.duration <= 60
    assert smoke.thresholds


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: x\nusers: {ws: 1}\nduraton: 5s", "duraton: unknown key (known: name,"),
        ("name: x\nusers: {mqtt: 1}", "users.mqtt: unknown user kind"),
        ("name: x\nusers: {ws: -1}", "users.ws: must be from 0"),
        ("name: x\nusers: {ws: 1}\nduration: soon", "duration: not a duration"),
        ("name: x\nusers: {ws: 1}\nthresholds: ['ws:p99<<5']", "thresholds[0]"),
        ("name: x\nusers: {ws: 0}", "users: at least one"),
        ("users: {ws: 1}", "name: required"),
        ("name: x\nusers: {ws: 1}\nrate: fast", "rate: not a rate"),
        ("name: [unclosed", "not valid YAML"),
        ("- a list", "a scenario is a mapping"),
        ("name: x\nusers: {ws: 1}\nreconnect: full_jiter:base=1", "reconnect: unknown reconnect"),
        ("name: x\nusers: {ws: 1}\nreconnect: full_jitter:bsae=1", "reconnect: reconnect policy"),
        ("name: x\nusers: {ws: 1}\nfeed: []", "feed: a mapping with rate"),
        ("name: x\nusers: {ws: 1}\nfeed: {rate: fast}", "feed.rate: not a rate"),
        ("name: x\nusers: {ws: 1}\nfeed: {payload_size: 1.5KiB}", "feed.payload_size: not a size"),
        ("name: x\nusers: {ws: 1}\nthresholds: 0", "thresholds: a list of expressions"),
        ("name: x\nusers: {ws: 1}\nthresholds: ws:p99<5ms", "thresholds: a list of expressions"),
        ("name: x\nusers: {ws: 1}\nworkers: true", "workers: must be a whole number"),
        ("name: x\nusers: {ws: 1}\nworkers: 65", "workers: must be from 1 to 64, got 65"),
        ("name: x\nusers: {ws: 1}\nspawn_rate: 0", "spawn_rate: rate must be more than 0"),
        ("name: x\nusers: {ws: 1}\ndescription: 2001-02-03", "description: must be a string"),
        ("name: x\nusers: {ws: 1}\nlab: 3", "lab: a mapping with grace"),
        ("name: x\nusers: {ws: 1}\nduration: 0s", "duration: must be positive"),
        ("name: x\nusers: {7: 1}", "users.7: unknown user kind"),
        (
            "name: x\nusers: {grpc: 1}\ngrpc_streams_per_channel: 0",
            "grpc_streams_per_channel: must be from 1 to 10000, got 0",
        ),
        (
            "name: x\nusers: {grpc: 1}\ngrpc_streams_per_channel: many",
            "grpc_streams_per_channel: must be a whole number",
        ),
        (
            "name: x\nusers: {sse: 1}\nsource_addresses: 10.0.0.300",
            "source_addresses: '10.0.0.300' is not an address or CIDR",
        ),
        ("name: x\nusers: {sse: 1}\nsource_addresses: ','", "source_addresses: no address given"),
        (
            "name: x\nusers: {sse: 1}\nsource_addresses: [10.0.0.1]",
            "source_addresses: must be a string",
        ),
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


def test_the_connections_scenario_ramps_cuts_everything_and_fits_100k_on_its_timeline() -> None:
    """``connections``: SSE and WebSocket streams ramped at its spawn rate, one drop of
    everything, full jitter with a 30 s cap, and a timeline on which 100,000 users (the
    ``--users 100000`` run) finish their ramp before the drop and are back before the end.
    It runs on the lab's own processes (no replicas, no proxy), and a machine with a file
    limit of 20,000 fits it with six workers."""
    scenario = load_scenario("connections")
    assert set(scenario.protocols) == {"sse", "ws"} and 1000 <= scenario.total_users <= 10_000
    assert not scenario.replicated and scenario.acts_on_targets
    (drop,) = scenario.actions
    assert (drop.do, drop.service) == ("drop_connections", "all")
    policy = ReconnectPolicy.from_spec(scenario.reconnect)
    assert policy.name == "full_jitter" and policy.params["cap"] == 30
    for expression in ("sse:lost==0", "ws:lost==0", "*:duplicates==0"):
        assert expression in scenario.thresholds
    scenario.scale_users(100_000)
    assert scenario.users == {"sse": 50_000, "ws_feed": 50_000}
    ramp = scenario.total_users / scenario.spawn_rate
    assert ramp < drop.at and drop.at + policy.params["cap"] + 2 < scenario.duration
    limits = HostLimits(open_files=20_000, listen_backlog=4096, ephemeral_ports=28_232)
    assert capacity_problems(scenario, limits, lab_protocols=scenario.protocols) != []
    scenario.workers = 6
    addresses = client_source_addresses(scenario, {}, env={})
    assert (
        capacity_problems(
            scenario, limits, lab_protocols=scenario.protocols, source_addresses=addresses
        )
        == []
    )


def test_source_addresses_and_grpc_streams_per_channel_reach_the_users_and_the_preflight() -> None:
    """Both keys become the users' variables (unset: nothing is set, the users' defaults
    hold), and the pre-flight counts with them: ports per source address, gRPC channels."""
    text = "name: x\nusers: {sse: 50000, grpc: 400}\nworkers: 4\n"
    plain = RunPlan(scenario=parse_scenario(text), thresholds=[], report_dir=Path("r"))
    env = plain.process_environment({})
    assert SOURCE_ADDRESSES_ENV not in env and GRPC_STREAMS_PER_CHANNEL_ENV not in env
    keyed = parse_scenario(text + "source_addresses: 10.1.0.0/30\ngrpc_streams_per_channel: 1\n")
    env = RunPlan(scenario=keyed, thresholds=[], report_dir=Path("r")).process_environment({})
    assert env[SOURCE_ADDRESSES_ENV] == "10.1.0.0/30"
    assert env[GRPC_STREAMS_PER_CHANNEL_ENV] == "1"
    remote = {"sse": "http://10.9.0.1:8081", "grpc": "10.9.0.1:8083"}
    assert client_source_addresses(plain.scenario, remote, env={}) == {"sse": 1, "grpc": 1}
    assert client_source_addresses(keyed, remote, env={}) == {"sse": 2, "grpc": 1}
    limits = HostLimits(open_files=1_000_000, listen_backlog=4096, ephemeral_ports=28_232)
    # 50,000 SSE connections from one address overflow its ports; from two they fit.
    assert any(
        "50000 sse connections" in problem
        for problem in capacity_problems(plain.scenario, limits, source_addresses={"sse": 1})
    )
    assert capacity_problems(keyed, limits, source_addresses={"sse": 2, "grpc": 1}) == []
    # One channel per gRPC user: 500 connections per worker instead of 5.
    few = HostLimits(open_files=400, listen_backlog=4096, ephemeral_ports=28_232)
    shared = parse_scenario("name: x\nusers: {grpc: 2000}\nworkers: 4\n")
    assert capacity_problems(shared, few) == []
    own = parse_scenario("name: x\nusers: {grpc: 2000}\nworkers: 4\ngrpc_streams_per_channel: 1\n")
    (problem,) = capacity_problems(own, few)
    assert "file descriptors per worker" in problem


def test_toml_and_rates(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nrate = "30000/m"\n[users]\nrest = 3\n')
    scenario = load_scenario(str(path))
    assert scenario.rate == 500
    assert scenario.users == {"rest": 3}
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario(str(tmp_path / "missing.yaml"))


def test_every_value_is_parsed_at_load_with_the_command_lines_grammars() -> None:
    scenario = parse_scenario(
        "name: x\nusers: {ws: 1, rest: 1}\nduration: 1.5m\nspawn_rate: 20/s\nrate: 30000/m\n"
        "feed: {rate: 1200/m, payload_size: 4KiB}\nreplicas: {ws: 2}\n"
        "lab: {grace: 2s, drain_delay: 250ms}\nactions: [{at: 1m, do: kill, service: ws}]\n"
    )
    assert (scenario.duration, scenario.spawn_rate, scenario.rate) == (90, 20, 500)
    assert (scenario.feed.rate, scenario.feed.payload_size) == (20, 4096)
    assert (scenario.lab.grace, scenario.lab.drain_delay) == (2, 0.25)
    assert scenario.actions[0].at == 60
    assert scenario.replica_counts() == {"rest": 1, "ws": 2}


def wirelab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wirelab", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("reconnect: full_jiter:base=1", "reconnect"),
        ("feed: []", "feed"),
        ("thresholds: 0", "thresholds"),
        ("actions: [{at: 5s, do: kill, service: ws, count: 0}]", "actions[0].count"),
    ],
)
def test_a_mistake_in_a_scenario_file_is_exit_2_with_one_line_naming_file_and_key(
    tmp_path, extra: str, key: str
) -> None:
    scenario = tmp_path / "mine.yaml"
    scenario.write_text(f"name: mine\nusers: {{ws: 2}}\nreplicas: 2\n{extra}\n")
    result = wirelab("run", "--scenario", str(scenario), "--report-dir", str(tmp_path / "r"))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"wirelab: error: {scenario}: {key}: ")
    assert not (tmp_path / "r").exists()


def test_the_printed_schema_accepts_the_built_ins_and_refuses_the_same_mistakes() -> None:
    """``wirelab scenarios --schema``: what an editor checks a file against."""
    result = wirelab("scenarios", "--schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for name in builtin_names():
        text = resources.files("wirelab.scenarios").joinpath(f"{name}.yaml").read_text()
        assert list(validator.iter_errors(yaml.safe_load(text))) == [], name
    for mistake in [
        "reconnect: full_jiter:base=1",
        "feed: []",
        "thresholds: 0",
        "duration: 1h30m",
        "rate: 500/fortnight",
        "users: {mqtt: 1}",
        "workers: 0",
        "lab: {graceful: 1s}",
        "actions: [{at: 1s, do: explode, service: ws}]",
    ]:
        document = yaml.safe_load(f"name: x\nusers: {{ws: 1}}\n{mistake}\n")
        assert list(validator.iter_errors(document)), mistake
        with pytest.raises(ScenarioError):
            parse_scenario(yaml.safe_dump(document))


def test_narrowed_to_request_protocols_a_scenario_keeps_only_thresholds_it_can_judge() -> None:
    # smoke: `*:error_rate<1%`, `sse:lost==0`, ..., `*:duplicates==0`, the generator gates.
    rest_only = load_scenario("smoke")
    rest_only.select_protocols(["rest"])
    # No user left reads the feed: a `*` stream threshold would fail with "no data".
    assert "*:duplicates==0" not in rest_only.thresholds
    assert "sse:lost==0" not in rest_only.thresholds
    assert {"*:error_rate<1%", "generator:cpu_max<85%"} <= set(rest_only.thresholds)
    with_a_stream = load_scenario("smoke")
    with_a_stream.select_protocols(["rest", "poll"])
    assert "*:duplicates==0" in with_a_stream.thresholds
