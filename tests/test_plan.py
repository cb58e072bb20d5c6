"""One plan for every path: the command line, the chart's environment and scenario files are
checked by the same checks, with the same words, naming where each value came from."""

from __future__ import annotations

import argparse

import pytest

import wirelab.plan
from wirelab.exitcodes import UsageError
from wirelab.plan import PLAN_CHECKS, PlanError, RunPlan, build_plan
from wirelab.run_options import (
    DEFAULT_WORKER_WAIT_S,
    RUN_OPTIONS,
    RunRequest,
    add_run_arguments,
    request_from_args,
    request_from_env,
)
from wirelab.scenarios import ScenarioError, parse_scenario

CLUSTER_URLS = {
    "WIRELAB_REST_URL": "http://rest:8080",
    "WIRELAB_SSE_URL": "http://sse:8081",
    "WIRELAB_WS_URL": "ws://ws:8082",
    "WIRELAB_GRPC_TARGET": "dns:///grpc:8083",
}


def from_flags(*argv: str) -> RunRequest:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return request_from_args(parser.parse_args(list(argv)))


def local_plan(*argv: str) -> RunPlan:
    return build_plan(from_flags(*argv))


def cluster_plan(**env: str) -> RunPlan:
    return build_plan(request_from_env({**CLUSTER_URLS, **env}), lab_targets=False)


@pytest.mark.parametrize(
    ("flag", "variable", "key", "value", "problem"),
    [
        ("--workers", "WIRELAB_RUN_WORKERS", "workers", "0", "must be from 1 to 64, got 0"),
        ("--workers", "WIRELAB_RUN_WORKERS", "workers", "65", "must be from 1 to 64, got 65"),
        ("--duration", "WIRELAB_RUN_DURATION", "duration", "0s", "must be positive"),
        ("--reconnect", "WIRELAB_RUN_RECONNECT", "reconnect", "full_jiter:base=1",
         "unknown reconnect policy 'full_jiter'"),
    ],
)  # fmt: skip
def test_a_check_of_the_scenario_holds_for_flags_variables_and_files_alike(
    flag: str, variable: str, key: str, value: str, problem: str
) -> None:
    with pytest.raises(PlanError) as from_cli:
        local_plan(flag, value)
    assert str(from_cli.value).startswith(f"{flag}: {problem}")
    with pytest.raises(PlanError) as from_env:
        cluster_plan(**{variable: value})
    assert str(from_env.value).startswith(f"{variable}: {problem}")
    with pytest.raises(ScenarioError) as from_file:
        parse_scenario(f"name: x\nusers: {{rest: 1}}\n{key}: {value}\n", source="x.yaml")
    assert str(from_file.value).startswith(f"x.yaml: {key}: {problem}")


def test_an_override_that_breaks_another_key_names_that_key() -> None:
    with pytest.raises(PlanError, match=r"actions\[0\]\.at: 10s is not within .* \(5s\)"):
        local_plan("--scenario", "rolling-deploy", "--duration", "5s")
    with pytest.raises(PlanError, match=r"actions\[0\]\.at: 10s is not within .* \(5s\)"):
        cluster_plan(WIRELAB_RUN_SCENARIO="rolling-deploy", WIRELAB_RUN_DURATION="5s")


def test_a_check_appended_to_the_plan_checks_holds_locally_and_on_a_cluster(monkeypatch) -> None:
    seen: list[bool] = []

    def at_most_six_users(plan: RunPlan) -> None:
        seen.append(plan.lab_targets)
        if plan.scenario.total_users > 6:
            raise PlanError(f"{plan.scenario.total_users} users are more than 6")

    monkeypatch.setattr(wirelab.plan, "PLAN_CHECKS", [*PLAN_CHECKS, at_most_six_users])
    with pytest.raises(UsageError, match="10 users are more than 6"):
        local_plan("--scenario", "smoke")
    with pytest.raises(UsageError, match="10 users are more than 6"):
        cluster_plan(WIRELAB_RUN_SCENARIO="smoke")
    assert local_plan("--users", "6").scenario.total_users == 6
    assert seen == [True, False, True]


def test_flags_and_variables_override_the_scenario_the_same_way() -> None:
    local = local_plan(
        "--scenario", "smoke", "--protocols", "ws,grpc", "--users", "40", "--spawn-rate", "8/s",
        "--duration", "2m", "--workers", "4", "--rate", "6000/m", "--threshold", "ws:lost==0",
    )  # fmt: skip
    cluster = cluster_plan(
        WIRELAB_RUN_SCENARIO="smoke",
        WIRELAB_RUN_PROTOCOLS="ws,grpc",
        WIRELAB_RUN_USERS="40",
        WIRELAB_RUN_SPAWN_RATE="8/s",
        WIRELAB_RUN_DURATION="2m",
        WIRELAB_RUN_WORKERS="4",
        WIRELAB_RUN_ARRIVAL_RATE="6000/m",
        WIRELAB_RUN_THRESHOLDS="ws:lost==0\n",
    )
    for plan in (local, cluster):
        scenario = plan.scenario
        assert scenario.protocols == ["ws", "grpc"]
        assert scenario.total_users == 40
        assert (scenario.spawn_rate, scenario.duration, scenario.workers) == (8, 120, 4)
        assert scenario.rate == 100
        assert [t.expression for t in plan.thresholds][-1] == "ws:lost==0"
    assert local.scenario == cluster.scenario


def test_one_worker_wait_default_that_a_flag_or_a_variable_overrides() -> None:
    assert local_plan().worker_wait_s == cluster_plan().worker_wait_s == DEFAULT_WORKER_WAIT_S
    assert local_plan("--worker-wait", "90s").worker_wait_s == 90
    assert cluster_plan(WIRELAB_RUN_WORKERS_MAX_WAIT="2m").worker_wait_s == 120


def test_a_cluster_plan_needs_every_protocols_url_and_a_local_one_starts_the_rest() -> None:
    with pytest.raises(PlanError, match="no target URL for sse, ws, grpc"):
        build_plan(request_from_env({"WIRELAB_REST_URL": "http://rest:8080"}), lab_targets=False)
    assert local_plan("--rest-url", "http://rest:8080").target_urls == {"rest": "http://rest:8080"}


def test_a_bad_variable_names_itself() -> None:
    with pytest.raises(UsageError, match="WIRELAB_RUN_USERS: not a whole number: 'many'"):
        request_from_env({"WIRELAB_RUN_USERS": "many"})
    with pytest.raises(UsageError, match="WIRELAB_RUN_DURATION: not a duration"):
        request_from_env({"WIRELAB_RUN_DURATION": "1h30m"})


def test_every_run_option_has_one_flag_and_at_most_one_variable() -> None:
    flags = [option.flag for option in RUN_OPTIONS]
    variables = [option.env for option in RUN_OPTIONS if option.env]
    assert len(set(flags)) == len(flags)
    assert len(set(variables)) == len(variables)
    assert all(field in RunRequest.__dataclass_fields__ for field in (o.dest for o in RUN_OPTIONS))
