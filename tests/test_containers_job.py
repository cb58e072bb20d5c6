"""The chart's job mode, run for real: ``helm template`` output as containers of a real engine.

The project's image is built from the Dockerfile, the Redis image from Debian's package, and
:class:`tests.kubelet.Kubelet` runs the rendered Deployments and Jobs as a kubelet would (see
its docstring for what it does and does not stand in for). There is no Kubernetes API server
here: nothing in these tests talks to one, and no controller reads the objects. The verdict is
the exit code of the run Job's container, which is what a CI pipeline on a cluster reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container_engine import Engine
from tests.fixtures.containers import Images, job_values, run_job, start_targets
from tests.k8s_tools import helm_template
from tests.kubelet import Kubelet
from wirelab.exitcodes import (
    EXIT_GENERATOR_BOUND,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_THRESHOLD_FAILED,
    EXIT_USAGE,
)

#: The first container test of a session also waits for the session's engine and images
#: (tests/fixtures/containers.py: minutes when nothing is cached); each test's own part stays
#: under a minute.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def lab(
    engine: Engine, images: Images, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kubelet]:
    """Redis and the four targets of a job-mode render, running and ready, for the module."""
    objects = helm_template(job_values())
    harness = Kubelet(engine, objects, tmp_path_factory.mktemp("job-lab"))
    try:
        start_targets(harness)
        yield harness
    finally:
        harness.close()


def test_job_mode_exits_0_when_the_default_thresholds_hold(lab: Kubelet) -> None:
    code = run_job(lab, helm_template(job_values()))
    # A crowded machine may make the generator, not the lab, the bottleneck (exit 4).
    assert code in (EXIT_OK, EXIT_GENERATOR_BOUND), lab.last_logs
    assert f"(exit code {code})" in lab.last_logs, lab.last_logs


def test_job_mode_exits_1_when_a_threshold_cannot_hold(lab: Kubelet) -> None:
    impossible = job_values(**{"run.thresholds": ["rest:p99<0.001ms"]})
    code = run_job(lab, helm_template(impossible))
    assert code == EXIT_THRESHOLD_FAILED, lab.last_logs
    assert "rest:p99<0.001ms" in lab.last_logs


def test_job_mode_exits_2_on_a_bad_scenario(lab: Kubelet) -> None:
    bad = job_values(**{"run.scenarioFile": "name: broken\nusers:\n  carrier_pigeon: 3\n"})
    code = run_job(lab, helm_template(bad), timeout=60)
    assert code == EXIT_USAGE, lab.last_logs
    assert "carrier_pigeon" in lab.last_logs


def test_job_mode_exits_3_when_the_targets_never_become_ready(
    engine: Engine, images: Images, tmp_path: Path
) -> None:
    """No target pod runs (their names do not even resolve): the wait ends in exit 3."""
    objects = helm_template(job_values(**{"run.targetsMaxWaitSeconds": 5}))
    harness = Kubelet(engine, objects, tmp_path)
    try:
        code = run_job(harness, objects, timeout=90)
    finally:
        harness.close()
    assert code == EXIT_INCOMPLETE, harness.last_logs
    assert "targets not ready" in harness.last_logs
