"""The reference targets as the chart runs them, and a pod replaced under load.

Each target Deployment runs with the chart's replicas (two), every pod at an address of its
own and the Services' names resolving to their pods (tests/kubelet.py; there is no Kubernetes
API server here, so no endpoints controller: a draining pod stays in DNS until it is gone,
which is harder on clients than a real Service). What a rolling restart does to one pod is
done by hand: a new pod started and ready first (maxSurge 1), then the old one's preStop hook
and SIGTERM. The clients are the chart's own job-mode master and worker, whose thresholds
include "nothing lost" for every stream protocol.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.container_engine import Engine
from tests.fixtures.containers import PROTOCOLS, TARGETS, Images, job_values, run_job, start_targets
from tests.k8s_tools import helm_template
from tests.kubelet import Kubelet, Pod
from wirelab.exitcodes import EXIT_GENERATOR_BOUND, EXIT_OK

pytestmark = pytest.mark.timeout(900)  # the first test may wait for the session's images

#: The chart's two replicas per target; a short drain so that a replacement fits in a test.
VALUES: dict[str, Any] = {
    **{f"targets.{p}.replicas": 2 for p in PROTOCOLS},
    "targets.drain.preStopSleepSeconds": 1,
    "targets.drain.drainDelaySeconds": 1,
    "targets.drain.graceSeconds": 6,
}
#: Replaced while the run goes on: the push protocols whose clients must resume.
REPLACED = ("wirelab-sse", "wirelab-ws")


@pytest.fixture(scope="module")
def lab(
    engine: Engine, images: Images, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Kubelet, list[Pod]]]:
    harness = Kubelet(engine, helm_template(job_values(**VALUES)), tmp_path_factory.mktemp("t"))
    try:
        yield harness, start_targets(harness)
    finally:
        harness.close()


def test_every_target_deployment_runs_its_replicas_with_probes_passing(
    lab: tuple[Kubelet, list[Pod]],
) -> None:
    harness, pods = lab
    assert sorted(p.workload[1] for p in pods) == sorted(t for t in TARGETS for _ in range(2))
    for pod in pods:
        container = pod.container()
        assert harness.ready(pod), pod.name
        for kind in ("readinessProbe", "livenessProbe"):
            assert container.spec.get(kind), f"{pod.name} has no {kind}"
            assert harness.probe(pod, container, container.spec[kind]), (pod.name, kind)
        host = harness.inspect(pod)["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert harness.inspect(pod)["Config"]["User"].split(":")[0] == "10001"


def test_a_target_pod_replaced_with_sigterm_while_clients_run_loses_nothing(
    lab: tuple[Kubelet, list[Pod]],
) -> None:
    """Every pod of the SSE and WebSocket targets is replaced in turn, as a rolling restart
    does, so every client of theirs has to reconnect and resume."""
    harness, pods = lab
    old = {name: [p for p in pods if p.workload[1] == name] for name in REPLACED}
    replaced: dict[str, list[Pod]] = {name: [] for name in REPLACED}
    errors: list[BaseException] = []

    def roll(master: Pod) -> None:
        # Into the run: the clients hold their streams by now.
        harness.wait_ready([master], timeout=60)
        time.sleep(4)

        def one(name: str) -> None:
            try:
                for pod in old[name]:
                    replaced[name].append(harness.replace(pod))
            except BaseException as exc:  # reported by the test below
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(n,)) for n in REPLACED]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)

    values = job_values(
        **VALUES,
        **{"run.duration": "40s", "run.users": 8, "run.protocols": ["sse", "ws", "grpc"]},
    )
    code = run_job(harness, helm_template(values), timeout=180, during=roll)
    assert not errors, errors
    assert code in (EXIT_OK, EXIT_GENERATOR_BOUND), harness.last_logs
    for name in REPLACED:
        for pod in old[name]:
            state = harness.inspect(pod)["State"]
            # SIGTERM, a drain, a clean exit within the grace period (137 would be SIGKILL).
            assert (state["Running"], state["ExitCode"]) == (False, 0), (pod.name, state)
        assert all(harness.ready(pod) for pod in replaced[name]), name
    summary = _summary(harness)
    for protocol in ("sse", "ws"):
        stream = summary_streams(summary, protocol)
        assert stream["delivered"] > 0, (protocol, stream)
        assert (stream["lost"], stream["duplicates"]) == (0, 0), (protocol, stream)
        assert stream["reconnects"] >= 1, (protocol, stream)
    gone = [p for name in REPLACED for p in old[name]]
    pods[:] = [p for p in pods if p not in gone] + [p for n in REPLACED for p in replaced[n]]


def _summary(harness: Kubelet) -> dict[str, Any]:
    assert harness.last_pod is not None
    reports = harness.last_pod.directory / "volumes" / "reports"
    (path,) = reports.glob("*/summary.json")
    return json.loads(path.read_text())


def summary_streams(summary: dict[str, Any], protocol: str) -> dict[str, int]:
    """One protocol's stream figures in a run's summary.json, summed over its streams."""
    rows = [row for row in summary["streams"] if row["protocol"] == protocol]
    assert rows, f"no {protocol} streams in the summary: {json.dumps(summary)[:2000]}"
    return {
        "delivered": sum(row["delivered"] for row in rows),
        "lost": sum(row["missing"] + row["reset_lost"] for row in rows),
        "duplicates": sum(row["duplicates"] for row in rows),
        "reconnects": sum(row["reconnects"] for row in rows),
    }
