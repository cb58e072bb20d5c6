"""A kubelet stand-in: the chart's rendered workloads run as containers of a real engine.

There is no Kubernetes API server on these machines, so no controller reads the objects;
this harness does the part of a kubelet (and of the Deployment/Job controllers' arithmetic)
that decides what a pod's containers are and how they run, from the ``helm template`` (or
``kubectl kustomize``) output, as literally as an engine allows:

- Deployments and StatefulSets get ``replicas`` pods, Jobs ``parallelism`` pods;
- each container gets the pod spec's image, command (entry point) and args, with ``$(VAR)``
  references expanded the way the kubelet does; env ``value``, ``secretKeyRef``,
  ``configMapKeyRef`` and ``fieldRef`` (name, namespace, labels, pod IP);
- ConfigMap and Secret volumes become read-only files, ``emptyDir`` a directory of the
  pod's own (``medium: Memory``: a tmpfs), as on a node;
- ``runAsUser``/``runAsGroup``/``fsGroup``, ``runAsNonRoot`` (checked against the image's
  user like the kubelet does), ``readOnlyRootFilesystem``, capabilities, no privilege
  escalation and the resource limits become engine flags;
- every pod gets an address of its own on an internal network the test creates (no gateway
  out of the machine), and every Service name resolves, through the engine's DNS, to the
  pods its selector matches, so two replicas listen on the same port as on a cluster;
- readiness, liveness and startup probes (httpGet, tcpSocket, exec, gRPC health) run as the
  kubelet runs them: ready means startup passed and readiness passed; a liveness failure
  restarts the container, and the restarts are counted;
- stopping a pod runs its preStop hook, then sends SIGTERM and waits its grace period.

What it does not do: Service load balancing (DNS returns every matching pod, ready or not:
there is no endpoints controller), RBAC, scheduling, rollouts. docs/container-tests.md says
which parts of a real install these tests prove.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.container_engine import Engine, EngineError

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
_MEMORY_UNITS = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
    "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
}  # fmt: skip
#: Pod restartPolicy -> the engine's restart policy (a stopped container stays stopped).
_RESTART = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}
_VAR_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class PodError(RuntimeError):
    """A pod could not be created or run as its spec says."""


def cpus(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity (``500m``, ``1``) in cores."""
    text = str(quantity)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    return float(text)


def memory_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity (``256Mi``, ``1Gi``, ``64M``) in bytes."""
    text = str(quantity)
    for suffix in sorted(_MEMORY_UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * _MEMORY_UNITS[suffix])
    return int(float(text))


def expand(text: str, variables: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion: known names replaced, unknown kept, ``$$`` is ``$``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return variables.get(name, match.group(0))

    return _VAR_REFERENCE.sub(one, text)


@dataclass
class Container:
    """One running container of a pod."""

    name: str
    id: str
    spec: dict[str, Any]
    restarts: int = 0


@dataclass
class Pod:
    """A pod the harness runs: its containers share the first one's network namespace."""

    name: str
    workload: tuple[str, str]
    ip: str
    labels: dict[str, str]
    spec: dict[str, Any]
    directory: Path
    containers: list[Container] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    stopped: bool = False

    def container(self, name: str | None = None) -> Container:
        """The named container, or the first."""
        if name is None:
            return self.containers[0]
        return next(c for c in self.containers if c.name == name)


class Kubelet:
    """Runs rendered workloads on ``engine``, on an internal network of the test's own."""

    def __init__(self, engine: Engine, objects: Iterable[dict[str, Any]], workdir: Path) -> None:
        self.engine = engine
        self.objects = [o for o in objects if o]
        self.workdir = workdir
        self.namespace = next(
            (
                o["metadata"].get("namespace")
                for o in self.objects
                if o["metadata"].get("namespace")
            ),
            "default",
        )
        self.pods: list[Pod] = []
        #: The logs of the first pod :meth:`remove` removed last (what a failing test shows).
        self.last_logs = ""
        #: The pod :func:`tests.fixtures.containers.run_job` ran last as the master.
        self.last_pod: Pod | None = None
        self._counter = 0
        self._lock = threading.Lock()
        self._stop_monitor = threading.Event()
        self._monitor: threading.Thread | None = None
        self.network, self.subnet = self._create_network()
        self._hosts = self.subnet.hosts()
        self.gateway = str(next(self._hosts))

    # -- objects ---------------------------------------------------------------------------

    def find(self, kind: str, name: str) -> dict[str, Any]:
        """The rendered object ``kind``/``name``."""
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        raise PodError(f"no {kind} {name} in the rendered objects")

    def adopt(self, objects: Iterable[dict[str, Any]]) -> None:
        """Take another render's objects, keeping this one's Secrets.

        What ``helm upgrade`` with new values does: the chart keeps its generated passwords
        and tokens on upgrade, so pods already running and the new ones agree on them.
        """
        new = [o for o in objects if o and o["kind"] != "Secret"]
        names = {(o["kind"], o["metadata"]["name"]) for o in new}
        kept = [o for o in self.objects if (o["kind"], o["metadata"]["name"]) not in names]
        self.objects = kept + new

    def _secret(self, name: str) -> dict[str, str]:
        obj = self.find("Secret", name)
        data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        data.update(obj.get("stringData") or {})
        return data

    def _config_map(self, name: str) -> dict[str, str]:
        return dict(self.find("ConfigMap", name).get("data") or {})

    def secret_value(self, name: str, key: str) -> str:
        """One key of a rendered Secret, decoded (what the test would `kubectl get`)."""
        return self._secret(name)[key]

    def _service_names(self, labels: Mapping[str, str]) -> list[str]:
        """Every Service whose selector matches ``labels``, by its short and long names."""
        names: list[str] = []
        for svc in self.objects:
            if svc["kind"] != "Service":
                continue
            selector = svc["spec"].get("selector") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                name = svc["metadata"]["name"]
                names += [name, f"{name}.{self.namespace}", f"{name}.{self.namespace}.svc"]
                names.append(f"{name}.{self.namespace}.svc.cluster.local")
        return names

    # -- network ---------------------------------------------------------------------------

    def _create_network(self) -> tuple[str, ipaddress.IPv4Network]:
        """An internal bridge (no route out) on a /24 no interface or route here uses."""
        used = subprocess.run(
            ["ip", "-4", "-o", "route", "show", "table", "all"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        taken = [
            ipaddress.ip_network(word, strict=False)
            for word in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", used)
        ]
        name = f"wirelab-{self.workdir.name[-20:]}".replace("_", "-")
        for third in range(256):
            subnet = ipaddress.ip_network(f"10.231.{third}.0/24")
            if any(subnet.overlaps(net) for net in taken if net.prefixlen > 0):
                continue
            result = self.engine.docker(
                "network", "create", "--internal", "--subnet", str(subnet), name, check=False
            )
            if result.returncode == 0:
                return name, subnet
        raise PodError("no free 10.231.x.0/24 for the test's network")

    # -- pods ------------------------------------------------------------------------------

    def run(self, kind: str, name: str, replicas: int | None = None) -> list[Pod]:
        """Start the workload's pods (replicas or parallelism of them, unless given)."""
        obj = self.find(kind, name)
        spec = obj["spec"]
        if replicas is None:
            replicas = int(spec.get("parallelism", 1) if kind == "Job" else spec.get("replicas", 1))
        pods = [self.start_pod(obj) for _ in range(replicas)]
        self._ensure_monitor()
        return pods

    def start_pod(self, workload: dict[str, Any]) -> Pod:
        """One pod of ``workload``'s template: its containers created and started."""
        template = workload["spec"]["template"]
        pod_spec = template["spec"]
        with self._lock:
            self._counter += 1
            suffix = f"{self._counter:05d}"
            ip = str(next(self._hosts))
        kind, wname = workload["kind"], workload["metadata"]["name"]
        pod_name = f"{wname}-{suffix}" if kind != "StatefulSet" else f"{wname}-{self._counter - 1}"
        labels = dict(template["metadata"].get("labels") or {})
        directory = self.workdir / "pods" / pod_name
        directory.mkdir(parents=True)
        pod = Pod(pod_name, (kind, wname), ip, labels, pod_spec, directory)
        volumes = self._volumes(pod)
        restart = _RESTART[pod_spec.get("restartPolicy", "Always")]
        for init in pod_spec.get("initContainers") or []:
            container = self._create(pod, init, volumes, restart="no", first=not pod.containers)
            self.engine.docker("start", container.id)
            code = self.wait_container(container, timeout=300)
            if code != 0:
                raise PodError(f"init container {init['name']} of {pod_name} exited {code}")
        for spec in pod_spec["containers"]:
            container = self._create(pod, spec, volumes, restart=restart, first=not pod.containers)
            pod.containers.append(container)
            self.engine.docker("start", container.id)
        with self._lock:
            self.pods.append(pod)
        return pod

    def _volumes(self, pod: Pod) -> dict[str, tuple[str, Path | None]]:
        """Volume name -> (kind, host directory); ``tmpfs`` has no directory."""
        volumes: dict[str, tuple[str, Path | None]] = {}
        fs_group = (pod.spec.get("securityContext") or {}).get("fsGroup")
        for volume in pod.spec.get("volumes") or []:
            name = volume["name"]
            path = pod.directory / "volumes" / name
            if "emptyDir" in volume:
                if (volume["emptyDir"] or {}).get("medium") == "Memory":
                    volumes[name] = ("tmpfs", None)
                    continue
                path.mkdir(parents=True)
                # A node's emptyDir is world-writable (and group-owned by fsGroup).
                path.chmod(0o777)
                volumes[name] = ("dir", path)
            elif "configMap" in volume or "secret" in volume:
                source = volume.get("configMap") or volume.get("secret")
                data = (
                    self._config_map(source["name"])
                    if "configMap" in volume
                    else self._secret(source["secretName"])
                )
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                path.mkdir(parents=True)
                for item in items:
                    target = path / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(data[item["key"]])
                    mode = item.get("mode", source.get("defaultMode", 0o644))
                    target.chmod(mode)
                    if fs_group is not None:
                        os.chown(target, 0, int(fs_group))
                volumes[name] = ("files", path)
            else:
                raise PodError(f"volume {name} of {pod.name}: kind not supported by the harness")
        return volumes

    def _env(self, pod: Pod, spec: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in spec.get("envFrom") or []:
            if "secretRef" in source:
                env.update(self._secret(source["secretRef"]["name"]))
            elif "configMapRef" in source:
                env.update(self._config_map(source["configMapRef"]["name"]))
        for var in spec.get("env") or []:
            name = var["name"]
            if "value" in var:
                env[name] = expand(str(var["value"]), env)
                continue
            ref = var.get("valueFrom") or {}
            if "secretKeyRef" in ref:
                key_ref = ref["secretKeyRef"]
                data = self._secret(key_ref["name"])
                if key_ref["key"] not in data and key_ref.get("optional"):
                    continue
                env[name] = data[key_ref["key"]]
            elif "configMapKeyRef" in ref:
                key_ref = ref["configMapKeyRef"]
                env[name] = self._config_map(key_ref["name"])[key_ref["key"]]
            elif "fieldRef" in ref:
                env[name] = self._field(pod, ref["fieldRef"]["fieldPath"])
            else:
                raise PodError(f"env {name} of {pod.name}: source not supported by the harness")
        return env

    def _field(self, pod: Pod, path: str) -> str:
        simple = {
            "metadata.name": pod.name,
            "metadata.namespace": self.namespace,
            "status.podIP": pod.ip,
            "status.hostIP": self.gateway,
            "spec.nodeName": "harness",
            "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default"),
        }
        if path in simple:
            return simple[path]
        if match := re.fullmatch(r"metadata\.labels\['(.+)'\]", path):
            return pod.labels.get(match.group(1), "")
        raise PodError(f"fieldRef {path} not supported by the harness")

    def _security_flags(self, pod: Pod, spec: dict[str, Any]) -> list[str]:
        pod_ctx = pod.spec.get("securityContext") or {}
        ctx = {**pod_ctx, **(spec.get("securityContext") or {})}
        flags: list[str] = []
        user, group = ctx.get("runAsUser"), ctx.get("runAsGroup")
        if user is None:
            image_user = self.engine.docker(
                "image", "inspect", "--format", "{{.Config.User}}", spec["image"]
            ).stdout.strip()
            if ctx.get("runAsNonRoot"):
                # The kubelet's rule: a numeric, non-zero image user, or it refuses to start.
                uid = image_user.split(":")[0]
                if not uid.isdigit() or int(uid) == 0:
                    raise PodError(
                        f"{pod.name}/{spec['name']}: runAsNonRoot and the image's user is "
                        f"{image_user or 'root'} (CreateContainerConfigError)"
                    )
        else:
            if ctx.get("runAsNonRoot") and int(user) == 0:
                raise PodError(f"{pod.name}/{spec['name']}: runAsNonRoot with runAsUser 0")
            flags += ["--user", f"{user}:{group}" if group is not None else str(user)]
        if pod_ctx.get("fsGroup") is not None:
            flags += ["--group-add", str(pod_ctx["fsGroup"])]
        if ctx.get("readOnlyRootFilesystem"):
            flags.append("--read-only")
        if ctx.get("allowPrivilegeEscalation") is False:
            flags += ["--security-opt", "no-new-privileges"]
        if ctx.get("privileged"):
            flags.append("--privileged")
        capabilities = ctx.get("capabilities") or {}
        flags += [f"--cap-drop={c}" for c in capabilities.get("drop") or []]
        flags += [f"--cap-add={c}" for c in capabilities.get("add") or []]
        return flags

    @staticmethod
    def _resource_flags(spec: dict[str, Any]) -> list[str]:
        resources = spec.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        flags: list[str] = []
        if "cpu" in limits:
            flags += ["--cpus", f"{cpus(limits['cpu']):g}"]
        if "memory" in limits:
            flags += ["--memory", str(memory_bytes(limits["memory"]))]
        if "cpu" in requests:
            # The kubelet's mapping of a CPU request to cgroup shares.
            flags += ["--cpu-shares", str(max(2, int(cpus(requests["cpu"]) * 1024)))]
        return flags

    def _create(
        self,
        pod: Pod,
        spec: dict[str, Any],
        volumes: Mapping[str, tuple[str, Path | None]],
        *,
        restart: str,
        first: bool,
    ) -> Container:
        env = self._env(pod, spec)
        command = [expand(str(a), env) for a in spec.get("command") or []]
        args = [expand(str(a), env) for a in spec.get("args") or []]
        flags = ["--name", f"{pod.name}-{spec['name']}", "--restart", restart]
        flags += ["--label", f"wirelab.pod={pod.name}", "--hostname", pod.name]
        if first:
            flags += ["--network", self.network, "--ip", pod.ip]
            for alias in self._service_names(pod.labels):
                flags += ["--network-alias", alias]
        else:
            flags += ["--network", f"container:{pod.containers[0].id}"]
        for name, value in env.items():
            flags += ["--env", f"{name}={value}"]
        for mount in spec.get("volumeMounts") or []:
            kind, path = volumes[mount["name"]]
            read_only = mount.get("readOnly", False) or kind == "files"
            if kind == "tmpfs":
                flags += ["--tmpfs", f"{mount['mountPath']}:rw,exec,mode=1777"]
                continue
            assert path is not None
            source = path / mount["subPath"] if mount.get("subPath") else path
            suffix = ",readonly" if read_only else ""
            flags += ["--mount", f"type=bind,source={source},target={mount['mountPath']}{suffix}"]
        flags += self._security_flags(pod, spec)
        flags += self._resource_flags(spec)
        if command:
            flags += ["--entrypoint", command[0]]
            args = command[1:] + args
        if spec.get("workingDir"):
            flags += ["--workdir", spec["workingDir"]]
        result = self.engine.docker("create", *flags, spec["image"], *args)
        return Container(spec["name"], result.stdout.strip(), spec)

    # -- probes ----------------------------------------------------------------------------

    def _port(self, spec: dict[str, Any], port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for declared in spec.get("ports") or []:
            if declared.get("name") == port:
                return int(declared["containerPort"])
        raise PodError(f"named port {port} not declared by {spec['name']}")

    def probe(self, pod: Pod, container: Container, probe: dict[str, Any]) -> bool:
        """One execution of a probe, as the kubelet does it; True when it passed."""
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                port = self._port(container.spec, get["port"])
                scheme = get.get("scheme", "HTTP").lower()
                url = f"{scheme}://{pod.ip}:{port}{get.get('path', '/')}"
                headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
                response = httpx.get(url, headers=headers, timeout=timeout, verify=False)
                return 200 <= response.status_code < 400
            if "tcpSocket" in probe:
                port = self._port(container.spec, probe["tcpSocket"]["port"])
                with socket.create_connection((pod.ip, port), timeout=timeout):
                    return True
            if "exec" in probe:
                result = self.engine.docker(
                    "exec", container.id, *probe["exec"]["command"], check=False, timeout=30
                )
                return result.returncode == 0
            if "grpc" in probe:
                return self._grpc_probe(pod, container, probe["grpc"], timeout)
        except (OSError, httpx.HTTPError, subprocess.TimeoutExpired):
            return False
        raise PodError(f"probe of {container.name} not supported by the harness: {probe}")

    def _grpc_probe(
        self, pod: Pod, container: Container, grpc_probe: dict[str, Any], timeout: float
    ) -> bool:
        import grpc  # noqa: PLC0415 - the project's dependency, only needed for gRPC probes
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

        port = self._port(container.spec, grpc_probe["port"])
        with grpc.insecure_channel(f"{pod.ip}:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                answer = stub.Check(
                    health_pb2.HealthCheckRequest(service=grpc_probe.get("service", "")),
                    timeout=max(timeout, 1.0),
                )
            except grpc.RpcError:
                return False
        return answer.status == health_pb2.HealthCheckResponse.SERVING

    def ready(self, pod: Pod) -> bool:
        """Every container running, its startup probe passed and its readiness probe passing."""
        for container in pod.containers:
            if not self.running(container):
                return False
            for kind in ("startupProbe", "readinessProbe"):
                probe = container.spec.get(kind)
                if probe and not self.probe(pod, container, probe):
                    return False
        return True

    def wait_ready(self, pods: Iterable[Pod], timeout: float = 60) -> None:
        """Block until every pod is ready; raise with the logs of those that are not."""
        pending = list(pods)
        deadline = time.monotonic() + timeout
        while pending:
            pending = [p for p in pending if not self.ready(p)]
            if not pending:
                return
            if time.monotonic() >= deadline:
                logs = "\n".join(f"--- {p.name}\n{self.logs(p)[-2000:]}" for p in pending)
                raise PodError(f"not ready after {timeout:g}s: {[p.name for p in pending]}\n{logs}")
            time.sleep(0.5)

    def _ensure_monitor(self) -> None:
        if self._monitor is None:
            self._monitor = threading.Thread(target=self._liveness, name="kubelet", daemon=True)
            self._monitor.start()

    def _liveness(self) -> None:
        """Liveness probes at their periods; failureThreshold misses in a row restart."""
        last: dict[tuple[str, str], float] = {}
        misses: dict[tuple[str, str], int] = {}
        while not self._stop_monitor.wait(1.0):
            with self._lock:
                pods = [p for p in self.pods if not p.stopped]
            for pod in pods:
                for container in pod.containers:
                    probe = container.spec.get("livenessProbe")
                    if not probe:
                        continue
                    key = (pod.name, container.name)
                    now = time.monotonic()
                    if now - pod.started < float(probe.get("initialDelaySeconds", 0)):
                        continue
                    if now - last.get(key, 0.0) < float(probe.get("periodSeconds", 10)):
                        continue
                    last[key] = now
                    if pod.stopped or not self.running(container):
                        continue
                    if self.probe(pod, container, probe):
                        misses[key] = 0
                        continue
                    misses[key] = misses.get(key, 0) + 1
                    if misses[key] >= int(probe.get("failureThreshold", 3)) and not pod.stopped:
                        misses[key] = 0
                        container.restarts += 1
                        self.engine.docker("restart", container.id, check=False)

    # -- state -----------------------------------------------------------------------------

    def running(self, container: Container) -> bool:
        state = self.engine.docker(
            "inspect", "--format", "{{.State.Running}}", container.id, check=False
        )
        return state.stdout.strip() == "true"

    def wait_container(self, container: Container, timeout: float) -> int:
        """The container's exit code, once it exits (``docker wait``)."""
        result = self.engine.docker("wait", container.id, timeout=timeout)
        return int(result.stdout.strip())

    def exit_code(self, pod: Pod, timeout: float = 120) -> int:
        """The exit code of the pod's first container, once it has exited."""
        return self.wait_container(pod.container(), timeout)

    def logs(self, pod: Pod, container: str | None = None) -> str:
        result = self.engine.docker("logs", pod.container(container).id, check=False)
        return result.stdout + result.stderr

    def inspect(self, pod: Pod, container: str | None = None) -> dict[str, Any]:
        return json.loads(self.engine.docker("inspect", pod.container(container).id).stdout)[0]

    def stop(self, pod: Pod) -> None:
        """What deleting a pod does: preStop, SIGTERM, the grace period, then SIGKILL."""
        pod.stopped = True
        grace = float(pod.spec.get("terminationGracePeriodSeconds", 30))
        started = time.monotonic()
        for container in pod.containers:
            pre_stop = ((container.spec.get("lifecycle") or {}).get("preStop")) or {}
            if "sleep" in pre_stop:
                time.sleep(float(pre_stop["sleep"]["seconds"]))
            elif "exec" in pre_stop:
                self.engine.docker("exec", container.id, *pre_stop["exec"]["command"], check=False)
        left = max(1, int(grace - (time.monotonic() - started)))
        for container in pod.containers:
            self.engine.docker(
                "stop", "--time", str(left), container.id, check=False, timeout=left + 60
            )

    def replace(self, pod: Pod) -> Pod:
        """One step of a rolling restart: a new pod first (maxSurge 1), then the old one goes."""
        workload = self.find(*pod.workload)
        fresh = self.start_pod(workload)
        self.wait_ready([fresh])
        self.stop(pod)
        return fresh

    def remove(self, pods: Iterable[Pod]) -> None:
        """Delete pods at once (SIGKILL); the first one's logs are kept in :attr:`last_logs`."""
        pods = list(pods)
        if pods:
            self.last_logs = self.logs(pods[0])
        ids = [c.id for p in pods for c in p.containers]
        for pod in pods:
            pod.stopped = True
        if ids:
            self.engine.docker("rm", "-f", *ids, check=False, timeout=120)
        with self._lock:
            self.pods = [p for p in self.pods if p not in pods]

    def close(self) -> None:
        """Remove every container and the network."""
        self._stop_monitor.set()
        if self._monitor is not None:
            self._monitor.join(timeout=30)
        ids = [c.id for p in self.pods for c in p.containers]
        if ids:
            self.engine.docker("rm", "-f", *ids, check=False, timeout=120)
        with contextlib.suppress(EngineError):
            self.engine.docker("network", "rm", self.network, check=False)


@contextlib.contextmanager
def kubelet(engine: Engine, objects: Iterable[dict[str, Any]], workdir: Path) -> Iterator[Kubelet]:
    """A :class:`Kubelet` whose containers and network are removed on exit."""
    harness = Kubelet(engine, objects, workdir)
    try:
        yield harness
    finally:
        harness.close()
