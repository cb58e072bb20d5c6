"""The Helm chart, rendered by the real helm 4 and checked against Kubernetes' own schemas.

Every combination below is rendered once per session by ``helm template`` and validated by
``kubernetes-validate --strict`` for Kubernetes 1.35 (kubectl's version); the policy tests
then read the rendered objects as a reviewer would.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.k8s_tools import CHART, ROOT, helm_template, run, tools, validate
from wirelab.exposure import WEB_PASSWORD_ENV, WEB_USER_ENV
from wirelab.probes import wait_for_targets
from wirelab.processes import ManagedProcess, free_port
from wirelab.protocols import URL_VARIABLES
from wirelab.run_options import CLUSTER_SETTINGS, RUN_OPTIONS
from wirelab.units import DURATION_PATTERN, RATE_PATTERN, SIZE_PATTERN, parse_duration

PROTOCOLS = ("rest", "sse", "ws", "grpc")
TARGETS_OFF = {f"targets.{p}.enabled": False for p in PROTOCOLS}

COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "job mode": {
        "mode": "job",
        "run.scenario": "soak",
        "run.duration": "15m",
        "run.thresholds": ["ws echo:p99<50ms", "sse:lost==0"],
        "run.extraPipPackages": ["my-users==1.2"],
        "run.envFromSecrets": ["my-env"],
        "run.tokenSecret.name": "lab-token",
        "targets.tokenSecret.name": "lab-token",
        "run.reports.existingClaim": "wirelab-reports",
        "run.workersMaxWaitSeconds": 600,
        "run.targetsMaxWaitSeconds": 120,
        "workers.replicas": 5,
    },
    "external InfluxDB and Redis": {
        "influxdb.enabled": False,
        "influxdb.external.url": "https://influx.example.com:8086",
        "influxdb.external.org": "perf",
        "influxdb.external.bucket": "runs",
        "influxdb.external.existingSecret": "influx-token",
        "redis.enabled": False,
        "redis.external.url": "redis://redis.example.com:6380/2",
        "redis.external.existingSecret": "redis-auth",
    },
    "HPA on": {"workers.autoscaling.enabled": True},
    "NetworkPolicy on": {"networkPolicy.enabled": True, "run.extraPipPackages": ["x"]},
    "targets off": {
        **TARGETS_OFF,
        "run.targetUrls.rest": "http://api.example.com",
        "run.targetUrls.ws": "ws://ws.example.com",
        "run.protocols": ["rest", "poll", "ws"],
    },
    "no load side": {"mode": "none", "networkPolicy.enabled": True},
    "TLS from Secrets": {
        "targets.tls.secretName": "lab-tls",
        "run.tls.caSecret.name": "lab-ca",
        "run.tls.caSecret.key": "bundle.pem",
        "networkPolicy.enabled": True,
    },
    "scenario and locustfile from files": {
        "run.scenarioFile": "name: mine\nusers:\n  ws: 10\n",
        "run.locustfile": "from wirelab.users import WebSocketUser\n",
        "grafana.enabled": False,
        "influxdb.enabled": False,
    },
}


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: helm_template(values) for name, values in COMBINATIONS.items()}


def objects(rendered, combination: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [o for o in rendered[combination] if kind is None or o["kind"] == kind]


def one(rendered, combination: str, kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects(rendered, combination, kind) if o["metadata"]["name"] == name]
    return found


def pod_specs(rendered, combination: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload and pod in a combination."""
    for obj in rendered[combination]:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "Pod":
            yield f"{kind}/{name}", obj["spec"]
        elif kind in {"Deployment", "StatefulSet", "Job"}:
            yield f"{kind}/{name}", obj["spec"]["template"]["spec"]


def containers(rendered, combination: str) -> Iterator[tuple[str, dict, dict[str, Any]]]:
    """(where, pod spec, container) of every container and init container."""
    for where, spec in pod_specs(rendered, combination):
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield f"{where}/{container['name']}", spec, container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def target_deployments(rendered, combination: str = "defaults") -> list[dict[str, Any]]:
    return [
        o
        for o in objects(rendered, combination, "Deployment")
        if o["metadata"]["labels"]["app.kubernetes.io/component"] in PROTOCOLS
    ]


# -- helm lint and the Kubernetes schemas ------------------------------------------------


@pytest.mark.parametrize(
    "values", [[], ["--set", "mode=job"], ["--set", "networkPolicy.enabled=true"]]
)
def test_helm_lint_strict_is_clean(values):
    result = run([tools().helm, "lint", "--strict", CHART, *values])
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_rendered_object_passes_kubernetes_validate_strict(rendered, combination):
    assert rendered[combination]
    assert validate(rendered[combination]) == []


def test_the_schema_rejects_unknown_keys_and_bad_values():
    for bad in ({"targets.rset.enabled": True}, {"mode": "headless"}, {"workers.replicas": 0}):
        with pytest.raises(RuntimeError, match="schema"):
            helm_template(bad)


def test_a_drain_delay_not_below_the_grace_period_is_refused():
    with pytest.raises(RuntimeError, match="drainDelaySeconds must be below"):
        helm_template({"targets.drain.drainDelaySeconds": 20, "targets.drain.graceSeconds": 20})


def test_an_admin_port_that_is_also_a_targets_port_is_refused():
    with pytest.raises(RuntimeError, match=r"targets\.admin\.port 8081 is also targets\.sse\.port"):
        helm_template({"targets.admin.port": 8081})
    # A disabled target's port is free.
    assert helm_template({"targets.admin.port": 8081, "targets.sse.enabled": False})


def test_an_external_influxdb_without_a_token_secret_is_refused():
    with pytest.raises(RuntimeError, match=r"needs influxdb\.external\.existingSecret"):
        helm_template(
            {
                "influxdb.enabled": False,
                "influxdb.external.url": "https://influx.example.com",
                "influxdb.external.org": "o",
                "influxdb.external.bucket": "b",
            }
        )


# -- every container --------------------------------------------------------------------


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_container_has_cpu_and_memory_requests_and_limits(rendered, combination):
    for where, _, container in containers(rendered, combination):
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{where} {bound}"


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_container_runs_as_non_root_read_only_with_no_capabilities(rendered, combination):
    for where, pod, container in containers(rendered, combination):
        ctx, pod_ctx = container["securityContext"], pod["securityContext"]
        assert ctx["runAsNonRoot"] is True, where
        assert pod_ctx["runAsNonRoot"] is True, where
        assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 0)) != 0, where
        assert ctx["readOnlyRootFilesystem"] is True, where
        assert ctx["allowPrivilegeEscalation"] is False, where
        assert ctx.get("privileged", False) is False, where
        assert ctx["capabilities"] == {"drop": ["ALL"]}, where
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod_ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
        # A read-only root needs somewhere to write: /tmp is always an emptyDir.
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        assert "/tmp" in mounts, where
        assert "emptyDir" in volumes[mounts["/tmp"]], where


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_container_that_serves_has_readiness_and_long_running_ones_liveness(
    rendered, combination
):
    for where, pod, container in containers(rendered, combination):
        if container in pod.get("initContainers", []):
            continue
        long_running = where.startswith(("Deployment/", "StatefulSet/"))
        if container.get("ports"):
            assert "readinessProbe" in container, where
        if long_running:
            assert "livenessProbe" in container, where
            assert "readinessProbe" in container, where


def test_only_the_master_gets_a_kubernetes_api_token(rendered):
    for combination in COMBINATIONS:
        for where, spec in pod_specs(rendered, combination):
            is_master = "/wirelab-master" in where or "Job/wirelab-run" in where
            assert spec["automountServiceAccountToken"] is is_master, where
            if is_master:
                assert spec["serviceAccountName"] == "wirelab"


# -- the targets: drain, rollout, balancing -------------------------------------------------


def _drain_numbers(deployment: dict[str, Any]) -> tuple[int, float, float, int]:
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    args = container["args"]

    def seconds(flag: str) -> float:
        return float(args[args.index(flag) + 1].removesuffix("s"))

    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    return (
        pre_stop,
        seconds("--drain-delay"),
        seconds("--grace"),
        spec["terminationGracePeriodSeconds"],
    )


@pytest.mark.parametrize(
    "drain",
    [
        {},
        {
            "targets.drain.preStopSleepSeconds": 0,
            "targets.drain.drainDelaySeconds": 0,
            "targets.drain.graceSeconds": 1,
        },
        {
            "targets.drain.preStopSleepSeconds": 15,
            "targets.drain.drainDelaySeconds": 29,
            "targets.drain.graceSeconds": 30,
        },
    ],
)
def test_target_draining_fits_inside_the_termination_grace_period(drain):
    deployments = [
        o
        for o in helm_template(drain)
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] in PROTOCOLS
    ]
    assert len(deployments) == 4
    for deployment in deployments:
        pre_stop, drain_delay, grace, termination = _drain_numbers(deployment)
        assert drain_delay < grace
        assert pre_stop + drain_delay < termination
        # The process may use its whole grace after SIGTERM, which comes after preStop.
        assert pre_stop + grace < termination


def test_target_rollouts_never_lose_capacity_and_node_drains_take_one_replica_at_a_time(
    rendered,
):
    deployments = target_deployments(rendered)
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(
        f"wirelab-{p}" for p in PROTOCOLS
    )
    for deployment in deployments:
        strategy = deployment["spec"]["strategy"]
        assert strategy == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }
        pdb = one(rendered, "defaults", "PodDisruptionBudget", deployment["metadata"]["name"])
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_http_targets_are_ready_on_readyz_and_grpc_on_the_grpc_health_service(rendered):
    for deployment in target_deployments(rendered):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        probe = container["readinessProbe"]
        if deployment["metadata"]["name"] == "wirelab-grpc":
            assert probe["grpc"] == {"port": 8083}
            assert container["livenessProbe"]["grpc"] == {"port": 8083}
        else:
            assert probe["httpGet"] == {"path": "/readyz", "port": "http"}
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_grpc_clients_balance_over_a_headless_service(rendered):
    headless = one(rendered, "defaults", "Service", "wirelab-grpc-headless")
    assert headless["spec"]["clusterIP"] == "None"
    master = one(rendered, "defaults", "Deployment", "wirelab-master")
    env = env_of(master["spec"]["template"]["spec"]["containers"][0])
    assert env["WIRELAB_GRPC_TARGET"] == "dns:///wirelab-grpc-headless:8083"
    assert env["WIRELAB_WS_URL"] == "ws://wirelab-ws:8082"


def test_targets_share_one_feed_through_redis_with_the_password_from_a_secret(rendered):
    for deployment in target_deployments(rendered):
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        assert env["REDIS_PASSWORD"] == {
            "secretKeyRef": {"name": "wirelab-redis", "key": "redis-password"}
        }
        assert env["WIRELAB_REDIS_URL"] == "redis://:$(REDIS_PASSWORD)@wirelab-redis:6379/0"
    external = target_deployments(rendered, "external InfluxDB and Redis")
    env = env_of(external[0]["spec"]["template"]["spec"]["containers"][0])
    assert env["WIRELAB_REDIS_URL"] == "redis://:$(REDIS_PASSWORD)@redis.example.com:6380/2"
    assert not objects(rendered, "external InfluxDB and Redis", "StatefulSet")
    assert "wirelab-redis" not in {
        o["metadata"]["name"] for o in objects(rendered, "external InfluxDB and Redis")
    }


def _admin_token_env(container: dict[str, Any]) -> Any:
    return env_of(container).get("WIRELAB_ADMIN_TOKEN")


def test_targets_open_the_admin_port_with_a_token_only_they_and_the_master_hold(rendered):
    token = {"secretKeyRef": {"name": "wirelab-admin", "key": "admin-token"}}
    secret = one(rendered, "defaults", "Secret", "wirelab-admin")
    assert set(secret["data"]) == {"admin-token"}
    # Generated once (lookup of the Secret already in the cluster), not on every upgrade.
    assert (
        'include "wirelab.secretValue" (list . $secret "admin-token" 32)'
        in (CHART / "templates" / "targets.yaml").read_text()
    )
    for deployment in target_deployments(rendered):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        args = container["args"]
        assert args[args.index("--admin-port") + 1] == "9100"
        # Beyond loopback (the pod IP), where `targets serve` insists on the token.
        assert args[args.index("--admin-host") + 1] == "0.0.0.0"
        assert {"name": "admin", "containerPort": 9100, "protocol": "TCP"} in container["ports"]
        assert _admin_token_env(container) == token
    for combination in ("defaults", "job mode"):
        for where, _, container in containers(rendered, combination):
            holds = _admin_token_env(container) is not None
            is_target = any(f"/wirelab-{p}/" in where for p in PROTOCOLS)
            is_master = where in {"Deployment/wirelab-master/master", "Job/wirelab-run/master"}
            assert holds is (is_target or is_master), where
            if holds:
                assert _admin_token_env(container) == token, where
    # No Service exposes it: the master calls each pod's IP.
    for service in objects(rendered, "defaults", "Service"):
        assert all(port["port"] != 9100 for port in service["spec"]["ports"])
        assert all(port.get("targetPort") != "admin" for port in service["spec"]["ports"])


def test_the_admin_port_and_token_can_be_given(rendered):
    given = helm_template(
        {
            "targets.admin.port": 9300,
            "targets.admin.existingSecret": "my-admin",
            "targets.admin.existingSecretKey": "token",
        }
    )
    assert not [
        o for o in given if o["kind"] == "Secret" and o["metadata"]["name"] == "wirelab-admin"
    ]
    ws = [o for o in given if o["kind"] == "Deployment" and o["metadata"]["name"] == "wirelab-ws"]
    (container,) = ws[0]["spec"]["template"]["spec"]["containers"]
    assert {"name": "admin", "containerPort": 9300, "protocol": "TCP"} in container["ports"]
    assert _admin_token_env(container) == {"secretKeyRef": {"name": "my-admin", "key": "token"}}
    # No target in the release: no token to make, none for the master to send.
    assert not [
        o for o in objects(rendered, "targets off", "Secret") if "admin" in o["metadata"]["name"]
    ]
    master = one(rendered, "targets off", "Deployment", "wirelab-master")
    assert _admin_token_env(master["spec"]["template"]["spec"]["containers"][0]) is None


def test_targets_off_renders_no_target_and_points_users_at_the_given_urls(rendered):
    names = {o["metadata"]["name"] for o in rendered["targets off"]}
    assert not names & {f"wirelab-{p}" for p in PROTOCOLS}
    master = one(rendered, "targets off", "Deployment", "wirelab-master")
    env = env_of(master["spec"]["template"]["spec"]["containers"][0])
    assert env["WIRELAB_REST_URL"] == "http://api.example.com"
    assert env["WIRELAB_WS_URL"] == "ws://ws.example.com"
    assert env["WIRELAB_RUN_PROTOCOLS"] == "rest,poll,ws"
    assert "WIRELAB_SSE_URL" not in env


# -- the load side ----------------------------------------------------------------------------


def test_job_mode_is_one_headless_run_that_exits_with_wirelabs_exit_code(rendered):
    names = {(o["kind"], o["metadata"]["name"]) for o in rendered["job mode"]}
    assert ("Deployment", "wirelab-master") not in names
    job = one(rendered, "job mode", "Job", "wirelab-run")
    spec = job["spec"]
    pod = spec["template"]["spec"]
    (master,) = pod["containers"]
    assert pod["restartPolicy"] == "Never"
    assert spec["backoffLimit"] == 0
    assert master["command"] == ["wirelab"]
    assert master["args"] == ["cluster", "master"]
    fail_job = spec["podFailurePolicy"]["rules"][0]
    assert fail_job["action"] == "FailJob"
    assert fail_job["onExitCodes"]["values"] == [1, 2, 3, 4]
    env = env_of(master)
    assert env["WIRELAB_RUN_WORKERS"] == "5"
    assert (env["WIRELAB_RUN_WORKERS_MAX_WAIT"], env["WIRELAB_RUN_TARGETS_MAX_WAIT"]) == (
        "600s",
        "120s",
    )
    assert env["WIRELAB_RUN_SCENARIO"] == "soak"
    assert env["WIRELAB_RUN_THRESHOLDS"] == "ws echo:p99<50ms\nsse:lost==0"
    assert env["WIRELAB_TOKEN"] == {"secretKeyRef": {"name": "lab-token", "key": "token"}}
    reports = {v["name"]: v for v in pod["volumes"]}["reports"]
    assert reports["persistentVolumeClaim"] == {"claimName": "wirelab-reports"}


def test_job_mode_workers_are_a_job_with_the_masters_lifetime(rendered):
    run_job = one(rendered, "job mode", "Job", "wirelab-run")
    workers = one(rendered, "job mode", "Job", "wirelab-worker")
    assert workers["spec"]["parallelism"] == workers["spec"]["completions"] == 5
    assert workers["spec"]["activeDeadlineSeconds"] == run_job["spec"]["activeDeadlineSeconds"]
    assert run_job["spec"]["activeDeadlineSeconds"] == 15 * 60 + 1800
    (worker,) = workers["spec"]["template"]["spec"]["containers"]
    assert worker["command"] == ["wirelab"]
    assert worker["args"] == ["cluster", "worker"]
    assert env_of(worker)["WIRELAB_MASTER_HOST"] == "wirelab-master"
    service = one(rendered, "job mode", "Service", "wirelab-master")
    pod_labels = run_job["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [p["port"] for p in service["spec"]["ports"]] == [5557]


def test_extra_pip_packages_install_under_the_images_pins_into_a_volume(rendered):
    job = one(rendered, "job mode", "Job", "wirelab-run")
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["args"][-1] == "my-users==1.2"
    assert init["args"][init["args"].index("--constraint") + 1] == "/opt/wirelab/constraints.txt"
    assert env_of(pod["containers"][0])["PYTHONPATH"] == "/opt/wirelab/extra"


def test_lab_mode_workers_have_probes_grace_and_an_optional_cpu_autoscaler(rendered):
    workers = one(rendered, "defaults", "Deployment", "wirelab-worker")
    pod = workers["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    probe = pod["containers"][0]["livenessProbe"]["exec"]["command"]
    assert f":{5557:04X} 01 " in probe[-1]  # an ESTABLISHED connection to the master port
    assert workers["spec"]["replicas"] == 2
    assert not objects(rendered, "defaults", "HorizontalPodAutoscaler")

    scaled = one(rendered, "HPA on", "Deployment", "wirelab-worker")
    assert "replicas" not in scaled["spec"]
    hpa = one(rendered, "HPA on", "HorizontalPodAutoscaler", "wirelab-worker")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "wirelab-worker",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_scenario_and_locustfile_given_with_set_file_land_in_the_run_configmap(rendered):
    config = one(rendered, "scenario and locustfile from files", "ConfigMap", "wirelab-run")
    assert set(config["data"]) == {"scenario.yaml", "locustfile.py"}
    assert config["data"]["scenario.yaml"].startswith("name: mine")
    assert "WebSocketUser" in config["data"]["locustfile.py"]
    master = one(rendered, "scenario and locustfile from files", "Deployment", "wirelab-master")
    env = env_of(master["spec"]["template"]["spec"]["containers"][0])
    assert env["WIRELAB_RUN_SCENARIO"] == "/opt/wirelab/run/scenario.yaml"
    assert env["WIRELAB_RUN_LOCUSTFILE"] == "/opt/wirelab/run/locustfile.py"
    assert env["WIRELAB_SINKS"] == ""
    # Without files of the user's there is nothing to carry: no ConfigMap, no volume.
    assert not [o for o in objects(rendered, "defaults", "ConfigMap") if o["metadata"]["name"]
                == "wirelab-run"]  # fmt: skip
    for where, pod, _ in containers(rendered, "defaults"):
        assert "run" not in {volume["name"] for volume in pod.get("volumes", [])}, where


def test_the_chart_holds_only_chart_files_and_runs_the_images_own_cli(rendered):
    """No code of its own: every pod of the release runs the image's `wirelab` command (or
    a third-party image's own entrypoint)."""
    chart_files = {
        path.relative_to(CHART).parts[0]
        for path in CHART.rglob("*")
        if path.is_file() and "dashboards" not in path.relative_to(CHART).parts
    }
    assert chart_files == {
        ".helmignore",
        "Chart.yaml",
        "values.yaml",
        "values.schema.json",
        "templates",
    }
    assert not [p for p in (CHART / "templates").rglob("*") if p.suffix == ".py"]
    # No command: the image's entrypoint, which is `wirelab`.
    assert 'ENTRYPOINT ["wirelab"]' in (ROOT / "Dockerfile").read_text()
    for combination in COMBINATIONS:
        for where, _, container in containers(rendered, combination):
            if container["image"].startswith("ghcr.io/wirelab/"):
                command = container.get("command", [])
                assert command in ([], ["wirelab"], ["python", "-m", "pip"]), (where, command)


# -- RBAC -------------------------------------------------------------------------------------


def test_the_role_allows_only_get_patch_of_target_deployments_and_list_delete_of_pods(rendered):
    for combination, values in COMBINATIONS.items():
        kinds = {o["kind"] for o in rendered[combination]}
        assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, combination
        for role in objects(rendered, combination, "Role"):
            allowed = set()
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        allowed |= {(group, resource, verb) for verb in rule["verbs"]}
                if rule["resources"] == ["deployments"]:
                    enabled = [p for p in PROTOCOLS if values.get(f"targets.{p}.enabled", True)]
                    assert rule["resourceNames"] == [f"wirelab-{p}" for p in enabled]
                else:
                    assert "resourceNames" not in rule
            assert allowed <= {
                ("apps", "deployments", "get"),
                ("apps", "deployments", "patch"),
                ("", "pods", "list"),
                ("", "pods", "delete"),
            }, combination
    # With no target, no Deployment rule at all: empty resourceNames would mean all of them.
    (role,) = objects(rendered, "targets off", "Role")
    assert [rule["resources"] for rule in role["rules"]] == [["pods"]]


def test_the_role_is_bound_to_the_masters_service_account_in_its_namespace(rendered):
    binding = one(rendered, "defaults", "RoleBinding", "wirelab-orchestrator")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "wirelab-orchestrator",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "wirelab", "namespace": "wirelab"}
    ]
    master = one(rendered, "defaults", "Deployment", "wirelab-master")
    env = env_of(master["spec"]["template"]["spec"]["containers"][0])
    assert env["WIRELAB_K8S_INSTANCE"] == "wirelab"
    assert env["WIRELAB_K8S_NAME_PREFIX"] == "wirelab-"


# -- secrets ----------------------------------------------------------------------------------

SECRET_WORDS = re.compile(r"password|token|secret|auth", re.IGNORECASE)


def _leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if path else key)
    else:
        yield path, node


def test_values_hold_no_secret_only_names_of_secrets_and_keys():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path, value in _leaves(values):
        if SECRET_WORDS.search(path.rsplit(".", 1)[-1]) or SECRET_WORDS.search(path):
            last = path.rsplit(".", 1)[-1]
            # Allowed: references (existingSecret, name, key) and switches, never a value.
            assert last in {"existingSecret", "existingSecretKey", "name", "key", "create"} or (
                value in ("", None, [], {})
            ), f"{path}={value!r} looks like a secret in values.yaml"


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_secrets_never_appear_in_configmaps_env_values_or_args(rendered, combination):
    secret_values = {
        base64.b64decode(v).decode()
        for secret in objects(rendered, combination, "Secret")
        for v in secret.get("data", {}).values()
    }
    assert all(len(v) >= 24 for v in secret_values)
    plain = json.dumps(
        [o["data"] for o in objects(rendered, combination, "ConfigMap")]
        + [
            [e.get("value") for e in c.get("env", [])] + c.get("args", []) + c.get("command", [])
            for _, _, c in containers(rendered, combination)
        ]
    )
    for value in secret_values:
        assert value not in plain
    for where, _, container in containers(rendered, combination):
        for entry in container.get("env", []):
            name = entry["name"]
            if SECRET_WORDS.search(name) and name != "WIRELAB_REDIS_URL":
                assert "valueFrom" in entry, f"{where}: {name} must come from a Secret"


def test_the_influxdb_secret_survives_upgrades_and_uninstall(rendered):
    secret = one(rendered, "defaults", "Secret", "wirelab-influxdb")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert set(secret["data"]) == {"admin-password", "admin-token"}
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    # Generated once: on upgrade the value already in the cluster is reused.
    assert 'lookup "v1" "Secret" $root.Release.Namespace' in helpers
    influx = one(rendered, "defaults", "StatefulSet", "wirelab-influxdb")
    env = env_of(influx["spec"]["template"]["spec"]["containers"][0])
    assert env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == {
        "secretKeyRef": {"name": "wirelab-influxdb", "key": "admin-token"}
    }
    claim = influx["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"


# -- InfluxDB, Grafana and dashboards ------------------------------------------------------------


def test_runs_write_to_the_releases_influxdb_or_the_external_one(rendered):
    master = one(rendered, "defaults", "Deployment", "wirelab-master")
    env = env_of(master["spec"]["template"]["spec"]["containers"][0])
    assert env["WIRELAB_SINKS"] == "influxdb2://wirelab-influxdb:8086?org=wirelab&bucket=wirelab"
    assert env["WIRELAB_INFLUX_TOKEN"] == {
        "secretKeyRef": {"name": "wirelab-influxdb", "key": "admin-token"}
    }
    external = one(rendered, "external InfluxDB and Redis", "Deployment", "wirelab-master")
    env = env_of(external["spec"]["template"]["spec"]["containers"][0])
    assert env["WIRELAB_SINKS"] == "influxdb2+https://influx.example.com:8086?org=perf&bucket=runs"
    assert env["WIRELAB_INFLUX_TOKEN"] == {
        "secretKeyRef": {"name": "influx-token", "key": "admin-token"}
    }
    provisioning = one(
        rendered, "external InfluxDB and Redis", "ConfigMap", "wirelab-grafana-provisioning"
    )
    datasources = yaml.safe_load(provisioning["data"]["datasources.yaml"])["datasources"]
    assert datasources[0]["url"] == "https://influx.example.com:8086"
    assert datasources[0]["jsonData"]["dbName"] == "runs"


def test_grafana_reads_influxdb_with_the_token_from_its_environment(rendered):
    provisioning = one(rendered, "defaults", "ConfigMap", "wirelab-grafana-provisioning")
    (source,) = yaml.safe_load(provisioning["data"]["datasources.yaml"])["datasources"]
    assert source["type"] == "influxdb"
    assert source["secureJsonData"] == {"httpHeaderValue1": "Token ${INFLUXDB_TOKEN}"}
    grafana = one(rendered, "defaults", "Deployment", "wirelab-grafana")
    env = env_of(grafana["spec"]["template"]["spec"]["containers"][0])
    assert env["INFLUXDB_TOKEN"]["secretKeyRef"]["name"] == "wirelab-influxdb"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == {
        "secretKeyRef": {"name": "wirelab-grafana", "key": "admin-password"}
    }


def test_the_charts_dashboards_link_is_the_repositorys_dashboards_folder():
    link = CHART / "dashboards"
    assert link.is_symlink()
    assert link.resolve() == (ROOT / "dashboards").resolve()


def test_the_repositorys_dashboards_fit_in_one_configmap(rendered):
    config = one(rendered, "defaults", "ConfigMap", "wirelab-grafana-dashboards")
    on_disk = sorted(p.name for p in (ROOT / "dashboards").glob("*.json"))
    assert sorted(config["data"]) == on_disk
    # The API server refuses a ConfigMap over 1 MiB: split it before the dashboards get there.
    assert sum(len(v.encode()) for v in config["data"].values()) < 900 * 1024


def test_every_dashboard_json_is_provisioned_into_grafana(tmp_path):
    """The chart reads dashboards/*.json through its link; a copy of the chart with two
    dashboards of its own shows that each file lands in the ConfigMap Grafana mounts."""
    chart = tmp_path / "wirelab"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("dashboards"))
    (chart / "dashboards").mkdir()
    dashboards = {
        "run-overview.json": {"uid": "wirelab-run", "title": "Run overview", "panels": []},
        "streams.json": {"uid": "wirelab-streams", "title": "Streams", "panels": []},
    }
    for name, dashboard in dashboards.items():
        (chart / "dashboards" / name).write_text(json.dumps(dashboard, indent=2))
    (chart / "dashboards" / "README.md").write_text("not a dashboard")

    rendered = helm_template(chart=chart)

    (config,) = [
        o
        for o in rendered
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboards")
    ]
    assert set(config["data"]) == set(dashboards)
    for name, dashboard in dashboards.items():
        assert json.loads(config["data"][name]) == dashboard
    (grafana,) = [
        o for o in rendered if o["kind"] == "Deployment" and "grafana" in o["metadata"]["name"]
    ]
    volumes = {v["name"]: v for v in grafana["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dashboards"]["configMap"]["name"] == config["metadata"]["name"]


# -- NetworkPolicies ------------------------------------------------------------------------------


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _component_labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "wirelab",
        "app.kubernetes.io/instance": "wirelab",
        "app.kubernetes.io/component": component,
    }


@pytest.mark.parametrize("combination", ["NetworkPolicy on", "no load side"])
def test_network_policies_deny_by_default_and_open_only_the_labs_paths(rendered, combination):
    policies = objects(rendered, combination, "NetworkPolicy")
    deny = one(rendered, combination, "NetworkPolicy", "wirelab-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"]
    assert [p["port"] for p in deny["spec"]["egress"][0]["ports"]] == [53, 53]  # DNS only
    for obj in rendered[combination]:
        if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert _selects(deny, labels), obj["metadata"]["name"]
    if combination == "NetworkPolicy on":
        targets = one(rendered, combination, "NetworkPolicy", "wirelab-targets")
        sources = [
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for peer in targets["spec"]["ingress"][0]["from"]
        ]
        assert sources == ["worker", "master", "test"]
        assert sorted(p["port"] for p in targets["spec"]["ingress"][0]["ports"]) == [
            8080,
            8081,
            8082,
            8083,
        ]
        load = one(rendered, combination, "NetworkPolicy", "wirelab-load")
        egress_ports = {p["port"] for rule in load["spec"]["egress"] for p in rule.get("ports", [])}
        assert {5557, 8080, 8083, 8086, 443, 6443} <= egress_ports
        # The admin port: from the master only, and the master's egress to it only.
        assert 9100 not in egress_ports  # workers never reach it
        admin_in = targets["spec"]["ingress"][1]
        assert [peer["podSelector"]["matchLabels"] for peer in admin_in["from"]] == [
            _component_labels("master")
        ]
        assert admin_in["ports"] == [{"port": 9100, "protocol": "TCP"}]
        assert len(targets["spec"]["ingress"]) == 2
        admin = one(rendered, combination, "NetworkPolicy", "wirelab-admin")
        assert admin["spec"]["podSelector"] == {"matchLabels": _component_labels("master")}
        assert admin["spec"]["policyTypes"] == ["Egress"]
        (rule,) = admin["spec"]["egress"]
        assert rule["ports"] == [{"port": 9100, "protocol": "TCP"}]
        (peer,) = rule["to"]
        assert peer["podSelector"]["matchExpressions"][1]["values"] == list(PROTOCOLS)
    else:  # no master: nobody may call the admin port
        targets = one(rendered, combination, "NetworkPolicy", "wirelab-targets")
        assert len(targets["spec"]["ingress"]) == 1
        assert "wirelab-admin" not in {p["metadata"]["name"] for p in policies}
    assert all(p["metadata"]["namespace"] == "wirelab" for p in policies)


# -- values: documented, in the schema ------------------------------------------------------------


def _value_paths(node: Any, path: str = "") -> Iterator[str]:
    """Leaf paths of values.yaml; maps of Kubernetes' own shape count as one value."""
    opaque = {"resources", "podSecurityContext", "containerSecurityContext"}
    if isinstance(node, dict) and node and path.rsplit(".", 1)[-1] not in opaque:
        for key, value in node.items():
            yield from _value_paths(value, f"{path}.{key}" if path else key)
    else:
        yield path


def test_every_value_is_documented_and_covered_by_the_schema():
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    documented = set(re.findall(r"^\s*## @param (\S+) \S", text, re.MULTILINE))
    schema = json.loads((CHART / "values.schema.json").read_text())
    paths = set(_value_paths(values))
    assert paths == documented

    def schema_node(path: str) -> dict[str, Any]:
        node = schema
        for part in path.split("."):
            node = node["properties"][part]
        return node

    for path in paths:
        node = schema_node(path)
        assert node.get("description"), path
        assert "type" in node, path

    def closed(node: dict[str, Any], where: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, where
            for key, child in node["properties"].items():
                closed(child, f"{where}.{key}")

    closed(schema, "values")


def test_the_chart_defaults_to_the_image_the_dockerfile_builds(rendered):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    master = one(rendered, "defaults", "Deployment", "wirelab-master")
    image = master["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/wirelab/wirelab:{chart['appVersion']}"
    assert chart["apiVersion"] == "v2"


def test_notes_say_how_to_reach_the_ui_grafana_and_the_job_verdict():
    def notes(*values: str) -> str:
        result = run(
            [
                tools().helm,
                "install",
                "wirelab",
                CHART,
                "-n",
                "wirelab",
                "--dry-run=client",
                *values,
            ]
        )
        return result.stdout.split("NOTES:", 1)[1]

    lab = notes()
    assert "port-forward svc/wirelab-master 8089:8089" in lab
    assert "user: admin" in lab
    assert "get secret wirelab-web -o jsonpath='{.data.web-password}' | base64 -d" in lab
    assert "port-forward svc/wirelab-grafana 3000:3000" in lab
    assert "helm test wirelab" in lab
    job = notes("--set", "mode=job")
    assert "logs -f --pod-running-timeout=15m job/wirelab-run" in job
    assert "terminated.exitCode" in job


def test_helm_test_checks_every_enabled_target_through_its_service(rendered):
    pod = one(rendered, "defaults", "Pod", "wirelab-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["wirelab"]
    assert container["args"][:2] == ["targets", "check"]
    assert container["args"][-4:] == [
        "rest=http://wirelab-rest:8080",
        "sse=http://wirelab-sse:8081",
        "ws=ws://wirelab-ws:8082",
        "grpc=grpc://wirelab-grpc:8083",
    ]
    (off,) = objects(rendered, "targets off", "Pod")
    assert off["spec"]["containers"][0]["args"] == ["targets", "check", "--timeout", "60s"]


def rendered_command(container: dict[str, Any]) -> list[str]:
    """A container's command and args as a local process: the image's `wirelab` is this
    virtualenv's."""
    command = container["command"]
    assert command[0] == "wirelab", command
    return [sys.executable, "-m", "wirelab", *command[1:], *container.get("args", [])]


def check_args_at(container: dict[str, Any], running) -> list[str]:
    """The helm test's `PROTOCOL=URL` checks, each pointed at a target running here (its
    scheme, hence TLS or not, stays the chart's)."""
    argv = rendered_command(container)
    checks = [arg for arg in argv if "=" in arg and "://" in arg]
    kept = [arg for arg in argv if arg not in checks]
    for check in checks:
        protocol, _, url = check.partition("=")
        if protocol in running.ports:
            scheme = url.partition("://")[0]
            kept.append(f"{protocol}={scheme}://127.0.0.1:{running.port(protocol)}")
    return kept


def test_the_helm_test_command_passes_against_real_targets(targets):
    """The test pod's command, run here against real targets: it answers 0 when they do."""
    (pod,) = [o for o in helm_template({}) if o["kind"] == "Pod"]
    running = targets.start(["rest", "grpc"])
    result = subprocess.run(
        check_args_at(pod["spec"]["containers"][0], running),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok   ") == 2


@pytest.mark.parametrize(("duration", "seconds"), [("45", 45), ("90s", 90), ("1.5h", 5400)])
def test_the_job_deadline_is_the_run_duration_plus_half_an_hour(duration, seconds):
    rendered = helm_template({"mode": "job", "run.duration": duration})
    for job in [o for o in rendered if o["kind"] == "Job"]:
        assert job["spec"]["activeDeadlineSeconds"] == seconds + 1800


@pytest.mark.parametrize("text", ["30s", "250ms", "1.5h", "45", "2m", "1h30m", "5 minutes", "-1s"])
def test_the_schema_accepts_exactly_the_durations_wirelab_parses(text):

    schema = json.loads((CHART / "values.schema.json").read_text())
    pattern = schema["properties"]["targets"]["properties"]["heartbeat"]["pattern"]
    try:
        parse_duration(text)
        parses = True
    except ValueError:
        parses = False
    assert bool(re.search(pattern, text)) is parses


def test_the_schema_descriptions_are_the_values_files_own():
    text = (CHART / "values.yaml").read_text()
    documented = dict(re.findall(r"^\s*## @param (\S+) (.*)$", text, re.MULTILINE))
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path, description in documented.items():
        node = schema
        for part in path.split("."):
            node = node["properties"][part]
        assert node["description"] == description, path


# -- TLS from Secrets (targets serve it, users verify it) ----------------------------------------


def _volume(pod: dict[str, Any], container: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume mounted at ``path`` in ``container``, checked read-only."""
    (mount,) = [m for m in container.get("volumeMounts", []) if m["mountPath"] == path]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return volume


def test_targets_serve_tls_from_a_tls_secret_mounted_read_only(rendered):
    for deployment in target_deployments(rendered, "TLS from Secrets"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        args = container["args"]
        cert = args[args.index("--tls-cert") + 1]
        key = args[args.index("--tls-key") + 1]
        assert (cert, key) == ("/etc/wirelab/tls/tls.crt", "/etc/wirelab/tls/tls.key"), name
        volume = _volume(pod, container, "/etc/wirelab/tls")
        assert volume["secret"]["secretName"] == "lab-tls"
        assert volume["secret"]["items"] == [
            {"key": "tls.crt", "path": "tls.crt"},
            {"key": "tls.key", "path": "tls.key"},
        ]
        assert volume["secret"]["defaultMode"] == 0o440  # the key: the pod's group only
        # The kubelet's gRPC probe has no TLS: gRPC is probed on the admin port's /readyz.
        ready, alive = container["readinessProbe"], container["livenessProbe"]
        if name == "wirelab-grpc":
            assert "grpc" not in ready and "grpc" not in alive
            assert ready["httpGet"] == {"path": "/readyz", "port": "admin"}
            assert alive["httpGet"] == {"path": "/healthz", "port": "admin"}
        else:
            assert ready["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
            assert alive["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    # Without targets.tls nothing of it is rendered.
    for deployment in target_deployments(rendered):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "--tls-cert" not in container["args"]
        assert "tls" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}


def test_target_services_say_they_speak_tls(rendered):
    protocols = {
        s["metadata"]["name"]: s["spec"]["ports"][0]
        for s in objects(rendered, "TLS from Secrets", "Service")
        if s["metadata"]["labels"]["app.kubernetes.io/component"] in PROTOCOLS
    }
    assert {name: port["appProtocol"] for name, port in protocols.items()} == {
        "wirelab-rest": "https",
        "wirelab-sse": "https",
        "wirelab-ws": "kubernetes.io/wss",
        "wirelab-grpc": "https",
        "wirelab-grpc-headless": "https",
    }


def test_with_target_tls_the_users_get_tls_urls_and_trust_the_ca_bundle_alone(rendered):
    for where, pod, container in containers(rendered, "TLS from Secrets"):
        if not where.endswith(("/wirelab-master", "/wirelab-worker")):
            continue
        env = env_of(container)
        assert env["WIRELAB_REST_URL"] == "https://wirelab-rest:8080", where
        assert env["WIRELAB_SSE_URL"] == "https://wirelab-sse:8081", where
        assert env["WIRELAB_WS_URL"] == "wss://wirelab-ws:8082", where
        assert env["WIRELAB_GRPC_TARGET"] == "grpcs://dns:///wirelab-grpc-headless:8083", where
        assert env["WIRELAB_CA_FILE"] == "/etc/wirelab/ca/ca.crt", where
        volume = _volume(pod, container, "/etc/wirelab/ca")
        # Only the CA's key: a cert-manager Secret's tls.key never reaches a load-side pod.
        assert volume["secret"] == {
            "secretName": "lab-ca",
            "defaultMode": 0o444,
            "items": [{"key": "bundle.pem", "path": "ca.crt"}],
        }
        assert "lab-tls" not in json.dumps(pod), where
    for where, _, container in containers(rendered, "defaults"):
        env = env_of(container)
        assert "WIRELAB_CA_FILE" not in env, where
        if "WIRELAB_REST_URL" in env:
            assert env["WIRELAB_REST_URL"].startswith("http://")
            assert env["WIRELAB_GRPC_TARGET"].startswith("dns:///")


def test_given_target_urls_keep_their_own_scheme_with_target_tls_on():
    rendered = helm_template(
        {"targets.tls.secretName": "lab-tls", "run.targetUrls.ws": "ws://elsewhere:80"}
    )
    (master,) = [
        o
        for o in rendered
        if (o["kind"], o["metadata"]["name"]) == ("Deployment", "wirelab-master")
    ]
    env = env_of(master["spec"]["template"]["spec"]["containers"][0])
    assert env["WIRELAB_WS_URL"] == "ws://elsewhere:80"
    assert env["WIRELAB_REST_URL"] == "https://wirelab-rest:8080"


def test_the_master_is_told_which_targets_all_means(rendered):
    master = one(rendered, "defaults", "Deployment", "wirelab-master")
    env = env_of(master["spec"]["template"]["spec"]["containers"][0])
    assert env["WIRELAB_ORCHESTRATOR"] == "kubernetes"
    assert env["WIRELAB_K8S_SERVICES"] == "rest,sse,ws,grpc"
    some = helm_template({"targets.sse.enabled": False, "targets.grpc.enabled": False})
    (master,) = [
        o for o in some if (o["kind"], o["metadata"]["name"]) == ("Deployment", "wirelab-master")
    ]
    env = env_of(master["spec"]["template"]["spec"]["containers"][0])
    assert env["WIRELAB_K8S_SERVICES"] == "rest,ws"
    (role,) = [o for o in some if o["kind"] == "Role"]
    assert role["rules"][0]["resourceNames"] == ["wirelab-rest", "wirelab-ws"]
    off = one(rendered, "targets off", "Deployment", "wirelab-master")
    assert "WIRELAB_K8S_SERVICES" not in env_of(off["spec"]["template"]["spec"]["containers"][0])


def test_helm_test_checks_tls_targets_over_tls_with_the_ca(rendered):
    (pod,) = objects(rendered, "TLS from Secrets", "Pod")
    (container,) = pod["spec"]["containers"]
    assert env_of(container) == {"HOME": "/tmp", "WIRELAB_CA_FILE": "/etc/wirelab/ca/ca.crt"}
    assert container["args"][-4:] == [
        "rest=https://wirelab-rest:8080",
        "sse=https://wirelab-sse:8081",
        "ws=wss://wirelab-ws:8082",
        "grpc=grpcs://wirelab-grpc:8083",
    ]
    assert _volume(pod["spec"], container, "/etc/wirelab/ca")["secret"]["secretName"] == "lab-ca"


def test_the_helm_test_command_passes_against_real_tls_targets(targets, pki):
    """The TLS test pod's command and environment, run here against real TLS targets."""
    (pod,) = [o for o in helm_template(COMBINATIONS["TLS from Secrets"]) if o["kind"] == "Pod"]
    (container,) = pod["spec"]["containers"]
    tls_args = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")]
    running = targets.start(["rest", "grpc"], args=tls_args, ca_file=pki / "ca.pem")
    env = {**os.environ, **env_of(container), "WIRELAB_CA_FILE": str(pki / "ca.pem")}
    result = subprocess.run(
        check_args_at(container, running),
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok   ") == 2


def test_the_job_waits_for_tls_targets_over_tls_trusting_the_ca(targets, pki):
    """The cluster master's wait for targets, at the URLs the chart gives with TLS on."""
    tls_args = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")]
    running = targets.start(["rest", "ws", "grpc"], args=tls_args, ca_file=pki / "ca.pem")
    urls = {
        "rest": f"https://127.0.0.1:{running.port('rest')}",
        "ws": f"wss://127.0.0.1:{running.port('ws')}",
        "grpc": f"grpcs://127.0.0.1:{running.port('grpc')}",
    }
    ca = str(pki / "ca.pem")
    assert wait_for_targets(urls, 10, ca_file=ca) == []
    # gRPC always verifies: without the lab's CA (public roots) it is not taken as ready.
    some = {"rest": urls["rest"], "grpc": urls["grpc"]}
    assert wait_for_targets(some, 0) == ["grpc"]
    # A plaintext probe of a TLS target never passes.
    plain = {"rest": urls["rest"].replace("https://", "http://")}
    assert wait_for_targets(plain, 0) == ["rest"]


# -- closed by default: the web UI's login ------------------------------------------------------


def test_the_web_ui_password_is_generated_once_into_a_secret_or_taken_from_yours(rendered):
    secret = one(rendered, "defaults", "Secret", "wirelab-web")
    assert set(secret["data"]) == {"web-password"}
    assert len(base64.b64decode(secret["data"]["web-password"])) == 32
    # Generated once (lookup of the Secret already in the cluster), not on every upgrade.
    assert (
        'include "wirelab.secretValue" (list . $secret "web-password" 32)'
        in (CHART / "templates" / "web-secret.yaml").read_text()
    )
    env = env_of(master_container(rendered["defaults"]))
    assert env["WIRELAB_WEB_USER"] == "admin"
    assert env["WIRELAB_WEB_PASSWORD"] == {
        "secretKeyRef": {"name": "wirelab-web", "key": "web-password"}
    }
    given = helm_template(
        {
            "master.webLogin.username": "ops",
            "master.webLogin.existingSecret": "my-login",
            "master.webLogin.existingSecretKey": "pw",
        }
    )
    assert not [
        o for o in given if o["kind"] == "Secret" and o["metadata"]["name"] == "wirelab-web"
    ]
    env = env_of(master_container(given))
    assert env["WIRELAB_WEB_USER"] == "ops"
    assert env["WIRELAB_WEB_PASSWORD"] == {"secretKeyRef": {"name": "my-login", "key": "pw"}}
    # Job mode serves no UI: no login to make.
    assert not [o for o in rendered["job mode"] if o["metadata"]["name"] == "wirelab-web"]
    for where, _, container in containers(rendered, "job mode"):
        assert "WIRELAB_WEB_PASSWORD" not in env_of(container), where


def master_container(rendered_objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The lab-mode master Deployment's one container."""
    (master,) = [
        o
        for o in rendered_objects
        if (o["kind"], o["metadata"]["name"]) == ("Deployment", "wirelab-master")
    ]
    (container,) = master["spec"]["template"]["spec"]["containers"]
    return container


def resolved_env(container: dict[str, Any], rendered_objects: list[dict[str, Any]]) -> dict:
    """A container's environment as the kubelet gives it: values (with ``$(NAME)`` of the
    variables before them), the rendered Secrets' keys, and the pod's namespace."""
    secrets = {
        o["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in o["data"].items()}
        for o in rendered_objects
        if o["kind"] == "Secret"
    }
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        source = entry.get("valueFrom", {})
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = secrets[ref["name"]][ref["key"]]
        elif "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.namespace"
            value = "wirelab"
        else:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), entry["value"])
        env[entry["name"]] = value
    return env


def test_lab_mode_web_ui_refuses_anonymous_requests_and_admits_the_secrets_login(tmp_path):
    """The lab-mode master's container as rendered (command, args, and env with the
    Secret's values), run here as a local process, listening on loopback instead of the
    pod's interfaces. No InfluxDB in this render: nothing may leave loopback."""
    objects_ = helm_template({"influxdb.enabled": False, "grafana.enabled": False})
    container = master_container(objects_)
    pod_env = resolved_env(container, objects_)
    password = pod_env["WIRELAB_WEB_PASSWORD"]
    assert len(password) == 32
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRELAB_")}
    env |= pod_env | {
        "WIRELAB_BIND_HOST": "127.0.0.1",
        "WIRELAB_WEB_PORT": str(port),
        "WIRELAB_MASTER_PORT": str(free_port()),
        "WIRELAB_RUN_REPORT_DIR": str(tmp_path / "reports"),
        "WIRELAB_RUN_SCRATCH_DIR": str(tmp_path / "scratch"),
        "HOME": str(tmp_path),
    }
    ui = ManagedProcess(
        rendered_command(container), name="wirelab-ui", env=env, log_path=tmp_path / "ui.log"
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        ui.wait_ready(lambda: httpx.get(f"{base}/login", timeout=1).status_code == 200, 60)
        with httpx.Client(base_url=base, timeout=5, follow_redirects=False) as anonymous:
            home = anonymous.get("/")
            assert home.status_code == 302
            assert urllib.parse.urlsplit(home.headers["location"]).path == "/login"
            assert anonymous.get("/stats/requests").status_code in (302, 401)
            assert anonymous.post("/swarm", data={"user_count": 1}).status_code in (302, 401)
            anonymous.post("/wirelab/login", data={"username": "admin", "password": "admin"})
            assert anonymous.get("/stats/requests").status_code in (302, 401)
        with httpx.Client(base_url=base, timeout=5, follow_redirects=False) as operator:
            operator.post("/wirelab/login", data={"username": "admin", "password": password})
            assert operator.get("/stats/requests").status_code == 200
            assert operator.get("/").status_code == 200
    finally:
        ui.stop(grace=10)


def test_the_values_schema_reads_durations_sizes_and_rates_with_wirelabs_grammar():
    schema = json.loads((CHART / "values.schema.json").read_text())

    def pattern(path: str) -> str:
        node = schema
        for part in path.split("."):
            node = node["properties"][part]
        return node["pattern"]

    assert pattern("targets.heartbeat") == DURATION_PATTERN
    assert pattern("run.duration") == f"^$|{DURATION_PATTERN}"
    assert pattern("run.arrivalRate") == f"^$|{RATE_PATTERN}"
    assert pattern("targets.feed.payloadSize") == SIZE_PATTERN
    assert pattern("targets.maxMessageBytes") == SIZE_PATTERN


def test_every_variable_the_chart_gives_the_load_side_is_one_wirelab_reads(rendered):
    """The chart and `wirelab cluster` agree on names: a renamed option cannot leave the
    chart setting a variable nobody reads."""
    roles = {option.env for option in RUN_OPTIONS if option.env}
    roles |= set(CLUSTER_SETTINGS) | set(URL_VARIABLES.values()) | {WEB_USER_ENV, WEB_PASSWORD_ENV}
    # Read past the roles: by the metrics plugin and the users (tokens) and the orchestrator.
    elsewhere = {
        "WIRELAB_INFLUX_TOKEN", "WIRELAB_TOKEN", "WIRELAB_ADMIN_TOKEN", "WIRELAB_ORCHESTRATOR",
        "WIRELAB_K8S_NAMESPACE", "WIRELAB_K8S_INSTANCE", "WIRELAB_K8S_NAME_PREFIX",
        "WIRELAB_K8S_SERVICES",
    }  # fmt: skip
    source = "\n".join(p.read_text() for p in (ROOT / "wirelab").rglob("*.py"))
    assert all(f'"{name}' in source for name in elsewhere)
    set_by_chart = set()
    for combination in COMBINATIONS:
        for where, _, container in containers(rendered, combination):
            if where.endswith(("/master", "/worker")):
                set_by_chart |= {name for name in env_of(container) if name.startswith("WIRELAB_")}
    assert set_by_chart - roles - elsewhere == set()
    assert {
        "WIRELAB_RUN_SCENARIO",
        "WIRELAB_RUN_LOCUSTFILE",
        "WIRELAB_WEB_PASSWORD",
    } <= set_by_chart
