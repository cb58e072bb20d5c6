"""The kustomize ``ci-soak`` overlay's Job, run for real the way a CI pipeline would use it.

A pipeline takes ``k8s/overlays/ci-soak`` as a base and shortens it for its own budget; this
test does the same with a kustomization of its own (a 10 s run of a few users, one worker,
no InfluxDB sink: InfluxDB 2's image cannot be had here), built by the real ``kubectl
kustomize``, with the Secrets k8s/README.md tells people to create. The objects then run as
containers (tests/kubelet.py; there is no Kubernetes API server here) and the run Job's exit
code is the verdict.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.container_engine import Engine
from tests.fixtures.containers import Images, run_job, start_targets
from tests.k8s_tools import K8S, NAMESPACE, kustomize
from tests.kubelet import Kubelet
from wirelab.exitcodes import EXIT_GENERATOR_BOUND, EXIT_OK

pytestmark = pytest.mark.timeout(900)  # the first test may wait for the session's images

#: What k8s/README.md's `kubectl create secret` lines create (name -> keys).
README_SECRETS = {
    "wirelab-redis": ("redis-password",),
    "wirelab-admin": ("admin-token",),
    "wirelab-influxdb": ("admin-password", "admin-token"),
    "wirelab-web": ("web-password",),
}
SHORT_RUN = {
    "WIRELAB_RUN_DURATION": "10s",
    "WIRELAB_RUN_USERS": "6",
    "WIRELAB_RUN_WORKERS": "1",
    "WIRELAB_SINKS": "",
}


def _job_patch(name: str, container: str, **spec: Any) -> dict[str, Any]:
    env = [{"name": k, "value": v} for k, v in SHORT_RUN.items()]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            **spec,
            "template": {"spec": {"containers": [{"name": container, "env": env}]}},
        },
    }


def pipeline_overlay(directory: Path) -> Path:
    """A CI pipeline's kustomization on top of ci-soak: short, small, no sink."""
    directory.mkdir(parents=True)
    patches = {
        "run.yaml": _job_patch("wirelab-run", "master"),
        "worker.yaml": _job_patch("wirelab-worker", "worker", parallelism=1, completions=1),
    }
    for name, patch in patches.items():
        (directory / name).write_text(yaml.safe_dump(patch))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize takes other kustomizations by relative path only.
        "resources": [os.path.relpath(K8S / "overlays" / "ci-soak", directory)],
        "patches": [{"path": name} for name in patches],
        "replicas": [{"name": f"wirelab-{p}", "count": 1} for p in ("rest", "sse", "ws", "grpc")],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


def readme_secrets() -> list[dict[str, Any]]:
    """The Secrets an operator creates before applying the manifests (random values)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "data": {k: base64.b64encode(secrets.token_hex(16).encode()).decode() for k in keys},
        }
        for name, keys in README_SECRETS.items()
    ]


def test_the_ci_soak_overlays_job_runs_and_exits_with_the_verdict(
    engine: Engine, images: Images, tmp_path: Path
) -> None:
    objects = kustomize(pipeline_overlay(tmp_path / "pipeline"))
    run = next(o for o in objects if o["kind"] == "Job" and o["metadata"]["name"] == "wirelab-run")
    env = {
        e["name"]: e.get("value") for e in run["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["WIRELAB_RUN_SCENARIO"] == "soak"
    assert env["WIRELAB_RUN_DURATION"] == "10s"
    harness = Kubelet(engine, [*readme_secrets(), *objects], tmp_path / "kubelet")
    try:
        start_targets(harness)
        code = run_job(harness, harness.objects)
    finally:
        harness.close()
    assert code in (EXIT_OK, EXIT_GENERATOR_BOUND), harness.last_logs
    assert "soak" in harness.last_logs
