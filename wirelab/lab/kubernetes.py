"""The orchestrator for targets running on Kubernetes: the same actions, through the API.

A target service (``rest``, ``sse``, ``ws``, ``grpc``) is a Deployment; its replicas are the
pods its label selector matches. The actions use only what the chart's namespaced Role
grants: get and patch the Deployment, list and delete its pods.

- ``rolling_restart``: patch the pod template's ``kubectl.kubernetes.io/restartedAt``
  annotation (what ``kubectl rollout restart`` does), then poll the Deployment until the
  rollout is complete as ``kubectl rollout status`` judges it: the controller has seen the new
  generation, every replica is updated, no old replica is left, all are available. The
  Deployment's own strategy (max surge 1, max unavailable 0 in the chart) and each pod's
  preStop/grace settings do the draining.
- ``kill``: delete ``n`` pods with grace period 0, chosen only among the pods the service's
  label selector matches: a crash, after which the Deployment starts replacements.
- ``scale``: patch ``spec.replicas`` and wait until that many replicas are ready.
- ``drop_connections``: not supported, and says why (see the method).

Configuration is in-cluster (the pod's ServiceAccount) or the user's kubeconfig, see
:meth:`KubernetesOrchestrator.from_environment`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .orchestrator import ActionResult, OrchestratorError

__all__ = [
    "RESTARTED_AT",
    "KubernetesOrchestrator",
    "chart_deployment_name",
    "chart_label_selector",
    "rollout_progress",
]

#: The pod-template annotation whose change makes the Deployment replace every pod.
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
_SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def chart_label_selector(instance: str, name: str = "wirelab") -> Callable[[str], str]:
    """Label selector of a target's pods as the Helm chart labels them."""

    def selector(service: str) -> str:
        return (
            f"app.kubernetes.io/name={name},app.kubernetes.io/instance={instance},"
            f"app.kubernetes.io/component={service}"
        )

    return selector


def chart_deployment_name(prefix: str = "wirelab-") -> Callable[[str], str]:
    """Name of a target's Deployment as the Helm chart names it (``<fullname>-<service>``)."""
    return lambda service: f"{prefix}{service}"


def rollout_progress(deployment: Mapping[str, Any], generation: int | None = None) -> str | None:
    """``None`` when the Deployment's rollout is complete, else what it is waiting for.

    The same checks as ``kubectl rollout status``; ``generation`` is the one a patch
    produced (the controller must have observed at least that one).
    """
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    metadata = deployment.get("metadata") or {}
    wanted_generation = generation if generation is not None else metadata.get("generation", 0)
    if status.get("observedGeneration", 0) < wanted_generation:
        return "waiting for the controller to observe the new generation"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and (
            condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            raise OrchestratorError(
                f"deployment {metadata.get('name')} exceeded its progress deadline: "
                f"{condition.get('message', '')}".rstrip(": ")
            )
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return f"{updated} of {wanted} replicas updated"
    if total > updated:
        return f"{total - updated} old replicas pending termination"
    if available < updated:
        return f"{available} of {updated} updated replicas available"
    return None


def _ready_progress(deployment: Mapping[str, Any]) -> str | None:
    """``None`` when every wanted replica is updated and ready, else what is missing."""
    pending = rollout_progress(deployment)
    if pending is not None:
        return pending
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    ready = (deployment.get("status") or {}).get("readyReplicas", 0)
    if ready < wanted:
        return f"{ready} of {wanted} replicas ready"
    return None


class KubernetesOrchestrator:
    """Acts on target Deployments through the Kubernetes API (see the module docstring).

    ``label_selector_for`` and ``deployment_name_for`` map a service name to its pods'
    label selector and its Deployment's name; the defaults follow the chart's names for a
    release called ``wirelab`` (:meth:`from_environment` reads the real release's).
    """

    def __init__(
        self,
        namespace: str,
        *,
        api_client: Any = None,
        label_selector_for: Callable[[str], str] | None = None,
        deployment_name_for: Callable[[str], str] | None = None,
        poll_interval: float = 1.0,
        request_timeout: float = 10.0,
    ) -> None:
        from kubernetes import client  # noqa: PLC0415 - only runs that use a cluster need it

        self.namespace = namespace
        self.label_selector_for = label_selector_for or chart_label_selector("wirelab")
        self.deployment_name_for = deployment_name_for or chart_deployment_name()
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self._api_client = api_client if api_client is not None else _load_api_client()
        self._apps = client.AppsV1Api(self._api_client)
        self._core = client.CoreV1Api(self._api_client)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> KubernetesOrchestrator:
        """The orchestrator the chart configures for the master pod.

        ``WIRELAB_K8S_NAMESPACE`` (else the pod's own namespace, else ``default``),
        ``WIRELAB_K8S_INSTANCE`` (the Helm release) and ``WIRELAB_K8S_NAME_PREFIX`` (the
        chart's full name plus ``-``). Credentials: the pod's ServiceAccount in a cluster,
        else ``KUBECONFIG`` / ``~/.kube/config``.
        """
        env = os.environ if env is None else env
        namespace = env.get("WIRELAB_K8S_NAMESPACE") or _pod_namespace() or "default"
        instance = env.get("WIRELAB_K8S_INSTANCE") or "wirelab"
        prefix = env.get("WIRELAB_K8S_NAME_PREFIX") or f"{instance}-"
        return cls(
            namespace,
            label_selector_for=chart_label_selector(instance),
            deployment_name_for=chart_deployment_name(prefix),
        )

    # -- the Orchestrator interface ------------------------------------------------------

    def rolling_restart(self, service: str, *, timeout: float = 300.0) -> ActionResult:
        """Patch the restartedAt annotation and wait until the rollout completes."""
        started = time.time()
        name = self.deployment_name_for(service)
        before = self._pod_names(service)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patched = self._patch_deployment(
            name, {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        )
        generation = patched.get("metadata", {}).get("generation")
        deployment = self._wait(
            name,
            lambda d: rollout_progress(d, generation),
            timeout=timeout,
            what=f"rolling restart of {service}",
        )
        replicas = deployment.get("spec", {}).get("replicas", 1)
        return ActionResult(
            action="rolling_restart",
            service=service,
            started_at=started,
            ended_at=time.time(),
            affected=sorted(before),
            detail=f"deployment {name}: {replicas} replicas replaced (restartedAt {stamp})",
        )

    def kill(self, service: str, count: int = 1) -> ActionResult:
        """Delete ``count`` of the service's running pods with no grace period: a crash."""
        if count < 1:
            raise OrchestratorError(f"kill {service}: count must be at least 1, got {count}")
        started = time.time()
        selector = self.label_selector_for(service)
        running = sorted(
            pod["metadata"]["name"]
            for pod in self._pods(selector)
            if not pod["metadata"].get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") == "Running"
        )
        if len(running) < count:
            raise OrchestratorError(
                f"kill {service}: asked for {count} pods, only {len(running)} running "
                f"match {selector}"
            )
        victims = running[:count]
        for pod in victims:
            self._call(
                f"delete pod {pod}",
                self._core.delete_namespaced_pod,
                pod,
                self.namespace,
                grace_period_seconds=0,
                body=_delete_options(),
            )
        return ActionResult(
            action="kill",
            service=service,
            started_at=started,
            ended_at=time.time(),
            affected=victims,
            detail=f"deleted {count} of {len(running)} pods with grace period 0",
        )

    def drop_connections(self, service: str) -> ActionResult:
        """Not supported on Kubernetes; raises :class:`OrchestratorError` saying why.

        The action means "cut every connection, keep every replica" (a network blip).
        Without a service mesh or a CNI feature to reset flows, the only cluster-level
        lever is deleting pods, and that is :meth:`kill`: a crash with new replicas, cold
        starts and DNS changes, which would make a reconnect-storm result mean something
        else. It is refused rather than quietly replaced.
        """
        raise OrchestratorError(
            f"drop_connections {service}: not supported on Kubernetes: without a service "
            "mesh the only cluster-level way to cut connections is deleting pods, which is "
            "a crash (use kill), not a network blip"
        )

    def scale(self, service: str, replicas: int, *, timeout: float = 120.0) -> ActionResult:
        """Patch ``spec.replicas`` and wait until that many replicas are ready."""
        if replicas < 0:
            raise OrchestratorError(f"scale {service}: replicas must be >= 0, got {replicas}")
        started = time.time()
        name = self.deployment_name_for(service)
        before = set(self._pod_names(service))
        self._patch_deployment(name, {"spec": {"replicas": replicas}})
        self._wait(name, _ready_progress, timeout=timeout, what=f"scale of {service}")
        after = set(self._pod_names(service))
        return ActionResult(
            action="scale",
            service=service,
            started_at=started,
            ended_at=time.time(),
            affected=sorted(before ^ after),
            detail=f"deployment {name}: {len(before)} -> {replicas} replicas",
        )

    def wait_ready(self, service: str, *, timeout: float = 120.0) -> None:
        """Return once every replica of the service's Deployment is updated and ready."""
        self._wait(
            self.deployment_name_for(service),
            _ready_progress,
            timeout=timeout,
            what=f"waiting for {service} to be ready",
        )

    # -- API calls -------------------------------------------------------------------------

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API call, its JSON body decoded; any failure is an OrchestratorError."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            response = method(
                *args, _preload_content=False, _request_timeout=self.request_timeout, **kwargs
            )
        except ApiException as exc:
            raise OrchestratorError(f"{what}: {_api_reason(exc)}") from None
        except Exception as exc:  # urllib3 and socket errors: the API is unreachable
            raise OrchestratorError(f"{what}: Kubernetes API unreachable: {exc}") from None
        data = response.data
        return json.loads(data) if data else {}

    def _get_deployment(self, name: str) -> dict[str, Any]:
        return self._call(
            f"get deployment {name}", self._apps.read_namespaced_deployment, name, self.namespace
        )

    def _patch_deployment(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        # Strategic merge, as kubectl sends it: only the given keys change. (The client's
        # default for a dict body would be a JSON Patch, which this is not.)
        return self._call(
            f"patch deployment {name}",
            self._apps.patch_namespaced_deployment,
            name,
            self.namespace,
            patch,
            _content_type=STRATEGIC_MERGE,
        )

    def _pods(self, selector: str) -> list[dict[str, Any]]:
        listing = self._call(
            f"list pods {selector}",
            self._core.list_namespaced_pod,
            self.namespace,
            label_selector=selector,
        )
        return list(listing.get("items") or [])

    def _pod_names(self, service: str) -> list[str]:
        return [pod["metadata"]["name"] for pod in self._pods(self.label_selector_for(service))]

    def _wait(
        self,
        name: str,
        progress: Callable[[dict[str, Any]], str | None],
        *,
        timeout: float,
        what: str,
    ) -> dict[str, Any]:
        """Poll the Deployment until ``progress`` says nothing is pending; raise on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            deployment = self._get_deployment(name)
            pending = progress(deployment)
            if pending is None:
                return deployment
            if time.monotonic() >= deadline:
                raise OrchestratorError(f"{what} did not complete in {timeout:g}s: {pending}")
            time.sleep(self.poll_interval)


def _delete_options() -> Any:
    from kubernetes import client  # noqa: PLC0415

    return client.V1DeleteOptions(grace_period_seconds=0, propagation_policy="Background")


def _api_reason(exc: Any) -> str:
    """One line from an ApiException: the API's own Status message when there is one."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    hint = {403: " (the ServiceAccount's Role does not allow it)", 404: " (no such object)"}
    return f"HTTP {exc.status} {message or exc.reason}{hint.get(exc.status, '')}"


def _pod_namespace() -> str | None:
    try:
        with open(_SERVICE_ACCOUNT_NAMESPACE) as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _load_api_client() -> Any:
    """An ApiClient from the pod's ServiceAccount, else from the user's kubeconfig."""
    from kubernetes import client, config  # noqa: PLC0415

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        try:
            # KUBECONFIG as it is now (the client reads it once, at import).
            config.load_kube_config(
                config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
            )
        except (config.ConfigException, OSError) as exc:
            raise OrchestratorError(
                f"no Kubernetes credentials: not in a cluster and no usable kubeconfig ({exc})"
            ) from None
    return client.ApiClient(configuration)
