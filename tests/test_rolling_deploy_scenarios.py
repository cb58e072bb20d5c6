"""Scenario keys that act on the targets (``replicas``, ``lab``, ``actions``), their checks,
the generated locustfile, and the driver that runs actions on the master's timeline."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import gevent
import pytest

from wirelab.lab.orchestrator import ActionResult, OrchestratorError
from wirelab.run_locustfile import write_locustfile
from wirelab.scenarios import ScenarioError, load_scenario, parse_scenario
from wirelab.scenarios.actions import Action
from wirelab.scenarios.driver import ScenarioDriver

BASE = "name: t\nduration: 30s\nusers: {ws_feed: 10, sse: 5, grpc: 2}\nreplicas: 2\n"


def test_the_built_in_deploy_and_storm_scenarios_act_on_replicas() -> None:
    deploy = load_scenario("rolling-deploy")
    assert deploy.replicated and deploy.replica_counts() == dict.fromkeys(
        ["rest", "sse", "ws", "grpc"], 3
    )
    assert deploy.slot_counts()["grpc"] == 4  # one spare slot to surge into
    assert deploy.actions == [Action(at=10.0, do="rolling_restart", service="all")]
    storm = load_scenario("reconnect-storm")
    assert [a.do for a in storm.actions] == ["drop_connections"]
    assert storm.reconnect.startswith("full_jitter")
    assert not load_scenario("smoke").replicated


def test_replicas_per_protocol_and_scale_actions_size_the_address_slots() -> None:
    scenario = parse_scenario(
        BASE.replace("replicas: 2", "replicas: {ws: 3}")
        + "lab: {spare_slots: 2}\nactions: [{at: 5s, do: scale, service: ws, replicas: 5}]\n"
    )
    assert scenario.replica_counts() == {"sse": 1, "ws": 3, "grpc": 1}
    assert scenario.slot_counts() == {"sse": 3, "ws": 7, "grpc": 3}


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("replicas: 0", "replicas: must be from 1 to 16"),
        ("replicas: {mqtt: 2}", "replicas.mqtt: unknown protocol"),
        ("replicas: two", "replicas: a whole number or a mapping"),
        ("lab: {grace: 1s, drain_delay: 2s}", "lab.drain_delay: must be shorter than lab.grace"),
        ("lab: {graceful: 1s}", "lab.graceful: unknown key"),
        ("actions: {at: 1s}", "actions: a list of"),
        ("actions: [{at: 40s, do: kill, service: sse}]", "actions[0].at: 40s is not within"),
        ("actions: [{do: kill, service: sse}]", "actions[0].at: required"),
        ("actions: [{at: 4s, do: explode, service: sse}]", "actions[0].do: unknown action"),
        ("actions: [{at: 4s, do: kill, service: mqtt}]", "actions[0].service: unknown service"),
        ("actions: [{at: 4s, do: kill, service: rest}]", "'rest' has no users"),
        ("actions: [{at: 4s, do: kill, service: sse, count: 3}]", "kills 3 sse replicas"),
        ("actions: [{at: 4s, do: scale, service: sse}]", "actions[0].replicas: required"),
        ("actions: [{at: 4s, do: kill, service: sse, replicas: 2}]", "only scale takes"),
        ("actions: [{at: 4s, do: storm, service: ws, when: now}]", "actions[0].when: unknown key"),
    ],
)
def test_a_bad_acting_key_is_one_error_naming_it(extra: str, needle: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        text = BASE.replace("replicas: 2\n", "") if extra.startswith("replicas:") else BASE
        parse_scenario(text + extra + "\n")
    assert needle in str(caught.value)


def wirelab(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wirelab", "run", "--report-dir", str(tmp_path), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rest-url", "http://10.0.0.1:8080"], "needs the lab's own targets"),
        (["--replicas", "0"], "--replicas: must be from 1 to 16"),
        (["--duration", "5s"], "actions[0].at: 10s is not within the run's duration (5s)"),
    ],
)
def test_deploy_runs_refuse_what_they_cannot_do_with_exit_2(tmp_path, args, needle) -> None:
    result = wirelab("--scenario", "rolling-deploy", *args, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing was started


def test_the_generated_locustfile_installs_the_driver_with_the_actions(tmp_path) -> None:
    scenario = load_scenario("reconnect-storm")
    text = write_locustfile(tmp_path, scenario).read_text()
    assert "class ws_feed(users.WebSocketFeedUser):" in text
    assert "install_scenario_driver(" in text and '"drop_connections"' in text
    compile(text, "locustfile.py", "exec")
    # gRPC users on replicas balance with client-side health checking (leave a draining one).
    deploy = write_locustfile(tmp_path, load_scenario("rolling-deploy")).read_text()
    grpc_class = deploy[deploy.index("class grpc(users.GrpcUser):") :]
    assert 'lb_policy = "round_robin"' in grpc_class.split("\n\n")[0]
    assert '"healthCheckConfig": {"serviceName": "wirelab.v1.Lab"}' in deploy
    assert (
        "install_scenario_driver"
        not in write_locustfile(tmp_path, load_scenario("smoke")).read_text()
    )


class FakeOrchestrator:
    """Records calls; ``kill`` fails; ``rolling_restart`` takes a while; has an event log."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []
        self._events = [
            {"seq": 1, "time_ns": 1_000, "kind": "replica_drain", "text": "ws-1 draining",
             "protocol": "ws", "replica": "ws-1"},
            {"seq": 2, "time_ns": 2_000, "kind": "something_else", "text": "", "protocol": "",
             "replica": ""},
        ]  # fmt: skip

    def rolling_restart(self, service: str, *, timeout: float = 300.0) -> ActionResult:
        self.calls.append(("rolling_restart", service, time.monotonic()))
        gevent.sleep(0.2)
        return ActionResult("rolling_restart", service, 0, 1, ["ws-1"], "replaced 1")

    def kill(self, service: str, count: int = 1) -> ActionResult:
        self.calls.append(("kill", service, time.monotonic()))
        raise OrchestratorError("cannot kill 1 replicas: only 0 running")

    def drop_connections(self, service: str) -> ActionResult:
        self.calls.append(("drop_connections", service, time.monotonic()))
        return ActionResult("drop_connections", service, 0, 0, [], "cut 3")

    def events(self, after: int = 0) -> list[dict]:
        return self._events[after:]


def test_the_driver_acts_on_time_and_puts_every_step_on_the_timeline() -> None:
    notes: list[tuple[str, str, dict]] = []
    orchestrator = FakeOrchestrator()
    actions = [
        Action(at=0.3, do="drop_connections", service="ws"),
        Action(at=0.05, do="rolling_restart", service="all"),
        Action(at=0.1, do="kill", service="sse"),
        Action(at=30, do="drop_connections", service="sse"),  # after the end: never runs
    ]
    driver = ScenarioDriver(
        actions, orchestrator, annotate=lambda kind, text, **tags: notes.append((kind, text, tags)),
        event_poll_s=0.05,
    )  # fmt: skip
    started = time.monotonic()
    driver.start()
    gevent.sleep(0.6)
    driver.stop()

    assert [(name, service) for name, service, _ in orchestrator.calls] == [
        ("rolling_restart", "all"), ("kill", "sse"), ("drop_connections", "ws"),
    ]  # fmt: skip
    assert [round(at - started, 1) for *_, at in orchestrator.calls] == [0.1, 0.1, 0.3]
    kinds = [kind for kind, _, _ in notes]
    assert kinds.count("deploy_start") == kinds.count("deploy_end") == 1
    assert kinds.index("deploy_start") < kinds.index("deploy_end")
    assert ("storm", "drop_connections ws: started", {"protocol": "ws"}) in notes
    (error,) = [n for n in notes if n[0] == "action_error"]
    assert "kill sse x1" in error[1] and "only 0 running" in error[1]
    (drain,) = [n for n in notes if n[0] == "replica_drain"]
    assert drain[2] == {"time_ns": 1_000, "protocol": "ws", "replica": "ws-1"}
    assert "something_else" not in kinds
    outcomes = {(r["action"], r["service"]): r["ok"] for r in driver.results}
    assert outcomes == {
        ("rolling_restart", "all"): True, ("kill", "sse"): False, ("drop_connections", "ws"): True,
    }  # fmt: skip


def test_an_action_still_running_at_the_end_is_reported_unfinished() -> None:
    notes: list[tuple[str, str]] = []

    class Slow(FakeOrchestrator):
        def rolling_restart(self, service: str, *, timeout: float = 300.0) -> ActionResult:
            gevent.sleep(10)
            raise AssertionError("killed before")

    driver = ScenarioDriver(
        [Action(at=0, do="rolling_restart", service="ws")], Slow(),
        annotate=lambda kind, text, **tags: notes.append((kind, text)),
    )  # fmt: skip
    driver.start()
    gevent.sleep(0.1)
    driver.stop()
    (error,) = [text for kind, text in notes if kind == "action_error"]
    assert "rolling_restart ws: had not finished" in error
