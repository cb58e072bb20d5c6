"""The orchestrator for targets running on Kubernetes: the same actions, through the API.

A target service (``rest``, ``sse``, ``ws``, ``grpc``) is a Deployment; its replicas are the
pods its label selector matches. The actions use only what the chart's namespaced Role
grants: get and patch the Deployment, list and delete its pods. ``drop_connections`` and
:meth:`KubernetesOrchestrator.replicas` also talk to each pod's admin port (see
``wirelab.targets.admin``) directly, at the pod's IP: no Service fronts it, the chart's
NetworkPolicy lets only the master reach it, and it requires the bearer token
``WIRELAB_ADMIN_TOKEN`` that the chart gives the targets and the master alike.

``service`` is a target (``rest``, ``sse``, ``ws``, ``grpc``) or ``all``: every target the
release runs (``WIRELAB_K8S_SERVICES``, which the chart sets to its enabled targets). With
``all`` every Deployment is patched first and then watched, so they roll (or scale) at once,
as the local lab's protocols do in parallel.

- ``rolling_restart``: patch the pod template's ``kubectl.kubernetes.io/restartedAt``
  annotation (what ``kubectl rollout restart`` does), then poll the Deployment until the
  rollout is complete as ``kubectl rollout status`` judges it: the controller has seen the new
  generation, every replica is updated, no old replica is left, all are available. The
  Deployment's own strategy (max surge 1, max unavailable 0 in the chart) and each pod's
  preStop/grace settings do the draining.
- ``kill``: delete ``n`` pods with grace period 0, chosen only among the pods the service's
  label selector matches: a crash, after which the Deployment starts replacements.
- ``scale``: patch ``spec.replicas`` and wait until that many replicas are ready.
- ``drop_connections``: ``POST /admin/drop`` on the admin port of every ready pod of the
  service, as the local lab does on every replica process: each pod resets every client
  connection at once and keeps serving (the network-blip storm, no pod replaced).

Every API call is tried again while its failure is transient (429 with its ``Retry-After``,
500/502/503/504, a refused or reset connection), with backoff, and never past the action's
deadline; a rollout or readiness wait counts a poll that kept failing as "not yet" and
polls on until its deadline. A permanent error (403, 404, 422...) fails the action at once
with the API's message. See :mod:`.kubernetes_retry`.

Configuration is in-cluster (the pod's ServiceAccount) or the user's kubeconfig, see
:meth:`KubernetesOrchestrator.from_environment`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..protocols import PROTOCOL_ORDER
from .kubernetes_retry import RetryPolicy, TransientApiError, call_api
from .orchestrator import ActionResult, OrchestratorError, Outcome, gather, select_services

__all__ = [
    "ADMIN_PORT",
    "KUBERNETES_EXTRA",
    "RESTARTED_AT",
    "SERVICES_ENV",
    "TARGET_SERVICES",
    "KubernetesOrchestrator",
    "MissingClientError",
    "chart_deployment_name",
    "chart_label_selector",
    "require_client",
    "rollout_progress",
]

#: The extra that installs the Kubernetes client: ``pip install 'wirelab[kubernetes]'``.
KUBERNETES_EXTRA = "kubernetes"


class MissingClientError(OrchestratorError):
    """The ``kubernetes`` package is not installed: the installation lacks the extra."""


def require_client() -> None:
    """Raise :class:`MissingClientError`, naming the extra, unless the Kubernetes client is
    installed. It is imported only where a call needs it: the rest of wirelab runs without."""
    if importlib.util.find_spec("kubernetes") is None:
        raise MissingClientError(
            "the Kubernetes orchestrator needs the Kubernetes client: "
            f"pip install 'wirelab[{KUBERNETES_EXTRA}]'"
        )


#: The pod-template annotation whose change makes the Deployment replace every pod.
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
_SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
#: The chart's target admin port (``targets.admin.port``), for a pod that names none.
ADMIN_PORT = 9100
#: The name of the admin port in a target container's ``ports``: it wins over the default.
ADMIN_PORT_NAME = "admin"
ADMIN_TOKEN_ENV = "WIRELAB_ADMIN_TOKEN"  # noqa: S105 - the name of a variable, not a secret
#: Every target service; by default what ``all`` means and what ``replicas()`` lists.
TARGET_SERVICES = PROTOCOL_ORDER
#: The chart's enabled targets, comma-separated: what ``all`` means on that release.
SERVICES_ENV = "WIRELAB_K8S_SERVICES"

#: What starting an action on one service returns: a call that waits for it to finish and
#: says what it did (the pods it affected, one line of detail).
_Finish = Callable[[], Outcome]


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
    ``admin_token`` is sent as the bearer token to the pods' admin ports; ``admin_port`` is
    that port for a pod whose container does not name one ``admin``. ``services``: the
    targets the release runs, what ``all`` means (a disabled target has no Deployment, and
    the chart's Role grants nothing on one). ``retry``: how transient API failures are
    tried again (see :mod:`.kubernetes_retry`).
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
        admin_token: str | None = None,
        admin_port: int = ADMIN_PORT,
        services: Sequence[str] = TARGET_SERVICES,
        retry: RetryPolicy | None = None,
    ) -> None:
        require_client()
        from kubernetes import client  # noqa: PLC0415 - only runs that use a cluster need it

        self.namespace = namespace
        self.label_selector_for = label_selector_for or chart_label_selector("wirelab")
        self.deployment_name_for = deployment_name_for or chart_deployment_name()
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self.admin_token = admin_token
        self.admin_port = admin_port
        unknown = sorted(set(services) - set(TARGET_SERVICES))
        if unknown or not services:
            raise OrchestratorError(
                f"target services must be some of {', '.join(TARGET_SERVICES)}, got "
                f"{', '.join(services) or 'none'}"
            )
        self.services = tuple(services)
        self.retry = retry or RetryPolicy()
        self._api_client = api_client if api_client is not None else _load_api_client()
        self._apps = client.AppsV1Api(self._api_client)
        self._core = client.CoreV1Api(self._api_client)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> KubernetesOrchestrator:
        """The orchestrator the chart configures for the master pod.

        ``WIRELAB_K8S_NAMESPACE`` (else the pod's own namespace, else ``default``),
        ``WIRELAB_K8S_INSTANCE`` (the Helm release) and ``WIRELAB_K8S_NAME_PREFIX`` (the
        chart's full name plus ``-``). The targets' admin token: ``WIRELAB_ADMIN_TOKEN``;
        their admin port where a pod does not name it: ``WIRELAB_K8S_ADMIN_PORT`` (else
        9100, the chart's). What ``all`` means: ``WIRELAB_K8S_SERVICES`` (comma-separated,
        else every target). Credentials: the pod's ServiceAccount in a cluster, else
        ``KUBECONFIG`` / ``~/.kube/config``.
        """
        env = os.environ if env is None else env
        namespace = env.get("WIRELAB_K8S_NAMESPACE") or _pod_namespace() or "default"
        instance = env.get("WIRELAB_K8S_INSTANCE") or "wirelab"
        prefix = env.get("WIRELAB_K8S_NAME_PREFIX") or f"{instance}-"
        services = [s.strip() for s in (env.get(SERVICES_ENV) or "").split(",") if s.strip()]
        return cls(
            namespace,
            label_selector_for=chart_label_selector(instance),
            deployment_name_for=chart_deployment_name(prefix),
            admin_token=env.get(ADMIN_TOKEN_ENV) or None,
            admin_port=int(env.get("WIRELAB_K8S_ADMIN_PORT") or ADMIN_PORT),
            services=services or TARGET_SERVICES,
        )

    # -- the Orchestrator interface ------------------------------------------------------

    def rolling_restart(self, service: str, *, timeout: float = 300.0) -> ActionResult:
        """Patch the restartedAt annotation and wait until the rollout completes.

        With ``all`` every target's Deployment is patched, then each rollout is watched
        against the one ``timeout``.
        """
        deadline = time.monotonic() + timeout
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}

        def start(each: str) -> _Finish:
            name = self.deployment_name_for(each)
            before = self._pod_names(each, deadline)
            patched = self._patch_deployment(name, patch, deadline)
            generation = patched.get("metadata", {}).get("generation")

            def finish() -> tuple[list[str], str]:
                deployment = self._wait(
                    name,
                    lambda d: rollout_progress(d, generation),
                    deadline=deadline,
                    timeout=timeout,
                    what=f"rolling restart of {each}",
                )
                replicas = deployment.get("spec", {}).get("replicas", 1)
                return sorted(before), f"deployment {name}: {replicas} replicas replaced"

            return finish

        result = self._each("rolling_restart", service, start)
        result.detail += f" (restartedAt {stamp})"
        return result

    def kill(self, service: str, count: int = 1) -> ActionResult:
        """Delete ``count`` of the service's running pods with no grace period: a crash.

        With ``all``: ``count`` pods of every target.
        """
        if count < 1:
            raise OrchestratorError(f"kill {service}: count must be at least 1, got {count}")

        def start(each: str) -> _Finish:
            selector = self.label_selector_for(each)
            running = sorted(
                pod["metadata"]["name"]
                for pod in self._pods(selector)
                if not pod["metadata"].get("deletionTimestamp")
                and (pod.get("status") or {}).get("phase") == "Running"
            )
            if len(running) < count:
                raise OrchestratorError(
                    f"kill {each}: asked for {count} pods, only {len(running)} running "
                    f"match {selector}"
                )
            victims = running[:count]
            for pod in victims:
                self._call(
                    f"delete pod {pod}",
                    self._core.delete_namespaced_pod,
                    pod,
                    self.namespace,
                    gone_is_done=True,
                    grace_period_seconds=0,
                    body=_delete_options(),
                )
            detail = f"deleted {count} of {len(running)} pods with grace period 0"
            return lambda: (victims, detail)

        return self._each("kill", service, start)

    def drop_connections(self, service: str) -> ActionResult:
        """``POST /admin/drop`` on every ready pod of ``service`` (or of every target, ``all``).

        Each pod resets every client connection at once and keeps serving: a network blip,
        not a crash (that is :meth:`kill`). Pods that are not ready are left alone: a
        starting one has no clients yet, a terminating one is already saying goodbye. The
        pods are asked one after the other, milliseconds apart, which still lands as one
        storm (a pod that hangs delays the ones after it by up to ``request_timeout``). A
        pod that does not answer, or rejects the admin token, does not spare the others'
        clients: every pod is asked, then an :class:`OrchestratorError` names the pods that
        failed and what the others cut.
        """
        started = time.time()
        services = self._services_of("drop_connections", service)
        pods = [
            (name, url)
            for each in services
            for name, url in self._ready_admin_urls(self.label_selector_for(each))
        ]
        if not pods:
            wanted = ", ".join(self.label_selector_for(each) for each in services)
            raise OrchestratorError(f"drop_connections {service}: no ready pod matches {wanted}")
        cut, failures = 0, []
        for name, url in pods:
            try:
                answer = self._admin_post(url + "/admin/drop")
            except OrchestratorError as exc:
                failures.append(f"pod {name} ({url}): {exc}")
                continue
            cut += sum(int(n) for n in (answer.get("dropped") or {}).values())
        if failures:
            raise OrchestratorError(
                f"drop_connections {service}: " + "; ".join(failures) + f" (the other "
                f"{len(pods) - len(failures)} pods cut {cut} connections)"
            )
        return ActionResult(
            action="drop_connections",
            service=service,
            started_at=started,
            ended_at=time.time(),
            affected=[name for name, _ in pods],
            detail=f"cut {cut} connections on {len(pods)} pods",
        )

    def scale(self, service: str, replicas: int, *, timeout: float = 120.0) -> ActionResult:
        """Patch ``spec.replicas`` and wait until that many replicas are ready.

        With ``all`` every target's Deployment is patched, then each is watched against the
        one ``timeout``.
        """
        if replicas < 0:
            raise OrchestratorError(f"scale {service}: replicas must be >= 0, got {replicas}")
        deadline = time.monotonic() + timeout

        def start(each: str) -> _Finish:
            name = self.deployment_name_for(each)
            before = set(self._pod_names(each, deadline))
            self._patch_deployment(name, {"spec": {"replicas": replicas}}, deadline)

            def finish() -> tuple[list[str], str]:
                self._wait(
                    name,
                    _ready_progress,
                    deadline=deadline,
                    timeout=timeout,
                    what=f"scale of {each}",
                )
                after = set(self._pod_names(each, deadline))
                detail = f"deployment {name}: {len(before)} -> {replicas} replicas"
                return sorted(before ^ after), detail

            return finish

        return self._each("scale", service, start)

    def wait_ready(self, service: str, *, timeout: float = 120.0) -> None:
        """Return once every replica of the service's Deployment (or of every target's,
        ``all``) is updated and ready, all within ``timeout``."""
        deadline = time.monotonic() + timeout

        def start(each: str) -> _Finish:
            def finish() -> tuple[list[str], str]:
                self._wait(
                    self.deployment_name_for(each),
                    _ready_progress,
                    deadline=deadline,
                    timeout=timeout,
                    what=f"waiting for {each} to be ready",
                )
                return [], ""

            return finish

        self._each("wait_ready", service, start)

    # -- one action on one service or on ``all`` -------------------------------------------

    def _services_of(self, action: str, service: str) -> tuple[str, ...]:
        return select_services(action, service, self.services, "on this release")

    def _each(self, action: str, service: str, start: Callable[[str], _Finish]) -> ActionResult:
        """``start`` every service (the API calls that set it going), then ``finish`` each.

        Starting all before waiting on any is what makes ``all`` one event on the cluster,
        as one ``kubectl rollout restart`` of several Deployments is. A service that fails
        does not stop the others; the error names every one that failed. On one service its
        own error is raised unchanged (a :class:`TransientApiError` stays one).
        """
        services = self._services_of(action, service)
        started = time.time()
        outcomes: dict[str, Outcome | Exception] = {}
        finishing: dict[str, _Finish] = {}
        for each in services:
            try:
                finishing[each] = start(each)
            except OrchestratorError as exc:
                outcomes[each] = exc
        for each, finish in finishing.items():
            try:
                outcomes[each] = finish()
            except OrchestratorError as exc:
                outcomes[each] = exc
        return gather(action, service, started, {each: outcomes[each] for each in services})

    # -- what the target monitor adds ------------------------------------------------------

    def replicas(self) -> list[dict[str, Any]]:
        """Every pod of the release's targets now, in the shape of
        ``LocalOrchestrator.replicas()``.

        ``admin_url`` is the pod's admin port at its IP (``/stats`` for every protocol,
        gRPC included). ``pid`` is what the monitor keys a process's counters by: the
        container's restarts plus one, not the process id, which is 1 in every container
        and would not tell a restarted container (counters from zero) from the one before.
        It is ``None`` while the pod has no IP or is not running: nothing to poll.
        """
        found = []
        for service in self.services:
            for pod in self._pods(self.label_selector_for(service)):
                status = pod.get("status") or {}
                restarts = sum(
                    int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or []
                )
                running = status.get("phase") == "Running"
                url = _admin_url(pod, self.admin_port)
                found.append(
                    {
                        "name": pod["metadata"]["name"],
                        "protocol": service,
                        "slot": None,
                        "port": _serving_port(pod),
                        "admin_url": url,
                        "pid": restarts + 1 if running and url else None,
                        "generation": restarts,
                        "alive": running,
                        "draining": bool(pod["metadata"].get("deletionTimestamp")),
                    }
                )
        return found

    # -- API calls -------------------------------------------------------------------------

    def _call(
        self,
        what: str,
        method: Callable[..., Any],
        *args: Any,
        deadline: float | None = None,
        gone_is_done: bool = False,
        **kwargs: Any,
    ) -> Any:
        """One API call, its JSON body decoded, tried again while it fails transiently
        (until ``deadline``, monotonic, if given); any failure is an OrchestratorError
        (:class:`TransientApiError` when it kept failing transiently)."""
        return call_api(
            what,
            method,
            *args,
            policy=self.retry,
            deadline=deadline,
            gone_is_done=gone_is_done,
            _preload_content=False,
            _request_timeout=self.request_timeout,
            **kwargs,
        )

    def _get_deployment(self, name: str, deadline: float | None = None) -> dict[str, Any]:
        return self._call(
            f"get deployment {name}",
            self._apps.read_namespaced_deployment,
            name,
            self.namespace,
            deadline=deadline,
        )

    def _patch_deployment(
        self, name: str, patch: dict[str, Any], deadline: float | None = None
    ) -> dict[str, Any]:
        # Strategic merge, as kubectl sends it: only the given keys change. (The client's
        # default for a dict body would be a JSON Patch, which this is not.) Sending it
        # again after a lost answer changes nothing: the same keys get the same values.
        return self._call(
            f"patch deployment {name}",
            self._apps.patch_namespaced_deployment,
            name,
            self.namespace,
            patch,
            deadline=deadline,
            _content_type=STRATEGIC_MERGE,
        )

    def _pods(self, selector: str, deadline: float | None = None) -> list[dict[str, Any]]:
        listing = self._call(
            f"list pods {selector}",
            self._core.list_namespaced_pod,
            self.namespace,
            deadline=deadline,
            label_selector=selector,
        )
        return list(listing.get("items") or [])

    def _ready_admin_urls(self, selector: str) -> list[tuple[str, str]]:
        """(name, admin URL) of the pods ``selector`` matches that are ready and not going."""
        return [
            (pod["metadata"]["name"], url)
            for pod in self._pods(selector)
            if _is_ready(pod) and (url := _admin_url(pod, self.admin_port))
        ]

    def _admin_post(self, url: str) -> dict[str, Any]:
        """POST to a pod's admin port with the bearer token; its JSON answer."""
        # A pod IP from the API server, never a user's URL.
        request = urllib.request.Request(url, method="POST", data=b"")  # noqa: S310
        if self.admin_token:
            request.add_header("Authorization", f"Bearer {self.admin_token}")
        try:
            with urllib.request.urlopen(request, timeout=self.request_timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            hint = (
                f" (the admin token was refused: {ADMIN_TOKEN_ENV} must be the targets' token)"
                if exc.code == 401
                else ""
            )
            raise OrchestratorError(f"HTTP {exc.code} {exc.reason}{hint}") from None
        except (OSError, ValueError) as exc:
            raise OrchestratorError(f"admin port unreachable: {exc}") from None

    def _pod_names(self, service: str, deadline: float | None = None) -> list[str]:
        pods = self._pods(self.label_selector_for(service), deadline)
        return [pod["metadata"]["name"] for pod in pods]

    def _wait(
        self,
        name: str,
        progress: Callable[[dict[str, Any]], str | None],
        *,
        deadline: float,
        timeout: float,
        what: str,
    ) -> dict[str, Any]:
        """Poll the Deployment until ``progress`` says nothing is pending; raise once the
        ``deadline`` (monotonic) has passed (the action's ``timeout``, for the message).

        A poll that kept failing transiently is "not yet", like a rollout still going: the
        API server restarting mid-deploy must not end the wait while the deploy goes on.
        """
        while True:
            try:
                deployment = self._get_deployment(name, deadline)
            except TransientApiError as exc:
                pending = f"the Kubernetes API kept failing ({exc})"
            else:
                pending = progress(deployment)
                if pending is None:
                    return deployment
            if time.monotonic() >= deadline:
                raise OrchestratorError(f"{what} did not complete in {timeout:g}s: {pending}")
            time.sleep(self.poll_interval)


def _is_ready(pod: Mapping[str, Any]) -> bool:
    """Running, its Ready condition true, not being deleted: what a Service would send to."""
    if pod["metadata"].get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _container_ports(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    containers = (pod.get("spec") or {}).get("containers") or []
    return [port for c in containers for port in c.get("ports") or []]


def _serving_port(pod: Mapping[str, Any]) -> int | None:
    """The protocol's port: the first container port that is not the admin port."""
    for port in _container_ports(pod):
        if port.get("name") != ADMIN_PORT_NAME:
            return port.get("containerPort")
    return None


def _admin_url(pod: Mapping[str, Any], default_port: int) -> str | None:
    """``http://<pod IP>:<admin port>``; the port the pod names ``admin`` wins, so a
    Deployment with another ``targets.admin.port`` needs no setting on the master."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    port = next(
        (p["containerPort"] for p in _container_ports(pod) if p.get("name") == ADMIN_PORT_NAME),
        default_port,
    )
    host = f"[{ip}]" if ":" in ip else ip  # an IPv6 pod IP
    return f"http://{host}:{port}"


def _delete_options() -> Any:
    from kubernetes import client  # noqa: PLC0415

    return client.V1DeleteOptions(grace_period_seconds=0, propagation_policy="Background")


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
