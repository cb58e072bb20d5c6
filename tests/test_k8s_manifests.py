"""k8s/: the plain manifests for people without Helm, kept equal to the chart.

Each kustomization in k8s/ is the chart rendered for fixed settings
(:data:`tests.k8s_tools.K8S_LAYOUT`). ``kubectl kustomize`` of it must build the same objects
as ``helm template`` with those settings, after :func:`tests.k8s_tools.normalise` drops
only what has to differ: Helm's own labels, the ``helm test`` hook Pod and the dashboards
ConfigMap (made from dashboards/ with kubectl, see k8s/README.md).
"""

from __future__ import annotations

import copy
import re

import pytest

from tests.k8s_tools import (
    EXCLUDED,
    EXISTING_SECRETS,
    HELM_ONLY_LABELS,
    K8S,
    K8S_LAYOUT,
    helm_template,
    key,
    kustomize,
    normalise,
    rendered_for,
    validate,
)

REGENERATE = (
    "k8s/ is out of date with the chart: run `.venv/bin/python -m tests.k8s_tools sync-k8s`"
)


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    return {name: kustomize(K8S / name) for name in K8S_LAYOUT}


@pytest.mark.parametrize("name", list(K8S_LAYOUT))
def test_kustomize_builds_exactly_what_the_chart_renders_for_the_same_settings(built, name):
    from_kustomize = normalise(built[name])
    from_helm = rendered_for(name)
    assert sorted(from_kustomize) == sorted(from_helm), REGENERATE
    different = [k for k in from_helm if from_kustomize[k] != from_helm[k]]
    assert different == [], f"{REGENERATE} (differs: {different})"


@pytest.mark.parametrize("name", list(K8S_LAYOUT))
def test_kustomize_output_passes_kubernetes_validate_strict(built, name):
    assert validate(built[name]) == []


def test_the_normalisation_drops_only_helm_labels_and_the_excluded_objects():
    rendered = helm_template({})
    kept = normalise(copy.deepcopy(rendered))
    assert {key(o) for o in rendered} - set(kept) == EXCLUDED
    for obj in rendered:
        if key(obj) in EXCLUDED:
            continue
        expected = copy.deepcopy(obj)
        labels = expected["metadata"]["labels"]
        assert set(labels) >= HELM_ONLY_LABELS
        for label in HELM_ONLY_LABELS:
            del labels[label]
        assert kept[key(obj)] == expected


def test_the_base_is_the_targets_and_the_redis_their_feed_lives_in(built):
    components = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in built["base"]}
    assert components == {"rest", "sse", "ws", "grpc", "redis"}
    assert {o["kind"] for o in built["base"]} == {"Deployment", "Service", "PodDisruptionBudget"}


def test_the_lab_overlay_adds_the_load_side_influxdb_and_grafana(built):
    kinds = {key(o) for o in built["overlays/lab"]}
    for expected in [
        ("Deployment", "wirelab-master"),
        ("Deployment", "wirelab-worker"),
        ("StatefulSet", "wirelab-influxdb"),
        ("Deployment", "wirelab-grafana"),
        ("Role", "wirelab-orchestrator"),
    ]:
        assert expected in kinds
    assert {key(o) for o in built["base"]} <= kinds


def test_the_ci_soak_overlay_is_one_headless_soak_job_with_its_workers(built):
    jobs = {o["metadata"]["name"]: o for o in built["overlays/ci-soak"] if o["kind"] == "Job"}
    assert set(jobs) == {"wirelab-run", "wirelab-worker"}
    (master,) = jobs["wirelab-run"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in master["env"]}
    assert env["WIRELAB_RUN_SCENARIO"] == "soak"
    assert env["WIRELAB_RUN_WORKERS"] == "4"
    assert jobs["wirelab-worker"]["spec"]["parallelism"] == 4
    assert not [
        o
        for o in built["overlays/ci-soak"]
        if o["metadata"]["name"] == "wirelab-master" and o["kind"] == "Deployment"
    ]


def test_the_plain_manifests_hold_no_secret_and_the_readme_creates_every_one_they_use(built):
    readme = (K8S / "README.md").read_text()
    for name, objects in built.items():
        assert not [o for o in objects if o["kind"] == "Secret"], name
        used = {ref["secretKeyRef"]["name"] for o in objects for ref in _value_froms(o)}
        for secret in used:
            assert f"create secret generic {secret}" in readme, f"{name} uses {secret}"
    assert set(EXISTING_SECRETS.values()) <= set(re.findall(r"create secret generic (\S+)", readme))
    assert re.search(r"create configmap wirelab-grafana-dashboards --from-file=dashboards/", readme)


def _value_froms(obj: dict) -> list[dict]:
    found: list[dict] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(obj)
    return found
