"""Target replicas on one machine: N processes per protocol, one Redis feed, a balancer.

Shape of the replicated lab (what ``wirelab run`` starts for a scenario with ``replicas``, a
``rolling_restart`` or a ``scale``; storms and kills alone run on the lab's own processes,
:mod:`.process_orchestrator`):

- **one redis-server** (started here unless the run was given ``--redis-url``): the feed's
  log, so a client that reconnects to any replica resumes where it left off, and the
  publisher lease, so exactly one replica publishes whichever ones come and go;
- **one process per replica and protocol** (``wirelab targets serve ws --admin-port …``):
  restarting the WebSocket replicas leaves SSE alone, as separate Deployments would. Every
  replica has a stable name (``ws-1``, ``ws-2``…; a restarted replica keeps its name, so the
  ``targets`` series stay continuous) and an admin port for drain, drop and ``/stats``;
- **REST, SSE and WebSocket behind a real HAProxy** (:mod:`.haproxy`): users get one URL
  per protocol, as they would in production;
- **gRPC balanced by the client**: the users' channels get every replica address and
  balance themselves: ``round_robin`` with client-side health checking (gRFC A17), so a
  replica whose health turns NOT_SERVING, the first step of its drain, gets no new calls
  from that moment (the run's generated locustfile configures the gRPC users so). That is
  how gRPC is deployed: an L4 proxy would pin each client's one HTTP/2 connection to one
  replica, and an L7 gRPC proxy is a different system to measure. Health checking is not
  optional here: without it calls keep arriving until the graceful stop, and grpc core
  cancels the ones it has received but not yet handed to the application (grpc/grpc#41785,
  open): measured here, 1 CANCELLED Echo in 822 during a 3-replica deploy under load, 50 in
  6,000 in a burst; with it, none.

**Address slots.** Each protocol gets ``slots`` loopback ports, reserved when the lab starts
(below the kernel's ephemeral range, so no outgoing connection can take one in the
meantime). A replica runs in a free slot. HAProxy's backends list one server per slot, and
the gRPC users' address list is every slot's port. There are more slots than replicas (one
spare by default, more when the scenario scales up): a rolling restart starts each new
replica in a free slot *before* draining the old one, so gRPC keeps max-surge 1 / max
unavailable 0 like the proxied protocols, and its clients need no new addresses: they were
given the spare ones from the start. A client that tries an empty slot is refused at once
on loopback and moves to the next address.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..limits import ephemeral_range
from ..probes import target_ready
from ..processes import ManagedProcess, free_port
from ..protocols import PROTOCOL_ORDER
from .haproxy import Backend, Haproxy

HOST = "127.0.0.1"
#: Protocols served through HAProxy; gRPC balances client-side.
PROXIED = ("rest", "sse", "ws")


class ReplicaError(RuntimeError):
    """A replica did not start, become ready or stop as asked."""


def reserve_ports(count: int, *, host: str = HOST, rng: random.Random | None = None) -> list[int]:
    """``count`` ports that are free now and outside the ephemeral range.

    Ports handed out by the kernel (bind to port 0) come from the ephemeral range, and so do
    the source ports of outgoing connections: with thousands of connections through HAProxy
    during a run, a slot port reserved there could be taken as somebody's source port before
    the replica that needs it binds. Below the range only listeners take ports.
    """
    low, _high = ephemeral_range()
    floor = 10_000 if low > 12_000 else 1_024
    rng = rng or random.Random()
    ports: list[int] = []
    candidate = rng.randrange(floor, low - count)
    tried = 0
    while len(ports) < count:
        tried += 1
        if tried > (low - floor):
            raise ReplicaError(f"no {count} free ports below {low}")
        candidate = floor + (candidate + 1 - floor) % (low - floor)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
        ports.append(candidate)
    return ports


def start_redis(workdir: Path) -> tuple[ManagedProcess, str]:
    """Start a redis-server for the lab's shared feed in ``workdir``; the running process
    (the caller stops it) and its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    (port,) = reserve_ports(1)
    argv = [
        _binary("redis-server"),
        # No config file: the machine's /etc/redis/redis.conf must not leak in.
        "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--daemonize", "no",
        # Replicas' clients come and go with every restart: no limit surprises.
        "--maxclients", "10000",
    ]  # fmt: skip
    redis = ManagedProcess(argv, name="redis-server", log_path=workdir / "redis.log")
    redis.start()

    def answers() -> bool:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    try:
        redis.wait_ready(answers, timeout=15)
    except RuntimeError as exc:
        raise ReplicaError(f"redis-server did not start: {str(exc).splitlines()[0]}") from None
    return redis, f"redis://{HOST}:{port}/0"


@dataclass(slots=True)
class ReplicaSettings:
    """How every replica process of the lab is started."""

    log_dir: Path
    redis_url: str
    python: str = sys.executable
    rate: float = 20.0
    payload_size: int = 64
    retention: int = 10_000
    #: Seconds a draining replica has before it cuts what is left.
    grace: float = 10.0
    #: Not-ready time before the listener closes: HAProxy checks every 300 ms.
    drain_delay: float = 0.5
    retry_ms: int = 1000
    retry_jitter_ms: int = 2000
    extra_args: list[str] = field(default_factory=list)
    #: Bearer token of the replicas' admin ports (``WIRELAB_ADMIN_TOKEN``).
    admin_token: str | None = None
    #: Seconds a new replica may take to become ready.
    ready_timeout: float = 30.0
    #: Seconds a new replica stays ready before the one it replaces drains (a Deployment's
    #: ``minReadySeconds``; gRPC always waits at least GRPC_MIN_READY_S).
    min_ready: float = 0.0


@dataclass(eq=False)
class Replica:
    """One target process: a protocol, a stable name, a slot (port) and an admin port."""

    name: str
    protocol: str
    slot: int
    port: int
    admin_port: int
    generation: int
    process: ManagedProcess
    admin_token: str | None = None
    started_at: float = field(default_factory=time.time)
    #: Set once a drain was asked for (SIGTERM or admin drain).
    draining_since: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def describe(self) -> dict[str, Any]:
        """What a monitor needs to poll this replica (see the control API's ``/replicas``)."""
        return {
            "name": self.name,
            "protocol": self.protocol,
            "slot": self.slot,
            "port": self.port,
            "admin_url": self.admin_url,
            "pid": self.pid if self.process.alive else None,
            "generation": self.generation,
            "alive": self.process.alive,
            "draining": self.draining_since is not None,
        }

    def admin(self, method: str, path: str, timeout: float = 5.0) -> dict[str, Any]:
        """Call the replica's admin port; the JSON answer."""
        data = b"" if method == "POST" else None
        request = urllib.request.Request(self.admin_url + path, method=method, data=data)  # noqa: S310
        if self.admin_token:
            request.add_header("Authorization", f"Bearer {self.admin_token}")
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback
            return json.loads(response.read() or b"{}")

    def ready(self) -> bool:
        """The protocol's own readiness (what the balancer checks) and the admin port's."""
        return target_ready(HOST, self.protocol, self.port) and self._admin_ready()

    def _admin_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.admin_url + "/readyz", timeout=1.0) as response:  # noqa: S310
                return response.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> None:
        try:
            self.process.wait_ready(self.ready, timeout=timeout)
        except RuntimeError as exc:
            raise ReplicaError(
                f"replica {self.name} did not become ready: {str(exc).splitlines()[0]}"
            ) from None

    def terminate(self) -> None:
        """SIGTERM: the drain sequence, exactly as an orchestrator stops a pod."""
        if self.draining_since is None:
            self.draining_since = time.time()
        with contextlib.suppress(RuntimeError):
            self.process.signal(signal.SIGTERM)

    def drain_via_admin(self) -> None:
        """``POST /admin/drain``: the same sequence through the admin port."""
        if self.draining_since is None:
            self.draining_since = time.time()
        self.admin("POST", "/admin/drain")

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the process to exit by itself; its exit code, ``None`` if still running."""
        deadline = time.monotonic() + timeout
        while self.process.alive and time.monotonic() < deadline:
            time.sleep(0.02)
        return None if self.process.alive else self.process.returncode

    def kill(self) -> None:
        """SIGKILL, no drain: a crash."""
        with contextlib.suppress(RuntimeError):
            self.process.signal(signal.SIGKILL)

    def stop(self, grace: float = 5.0) -> int | None:
        """Stop and reap (SIGTERM, then SIGKILL after ``grace``)."""
        return self.process.stop(grace=grace)


def launch_replica(
    settings: ReplicaSettings,
    protocol: str,
    name: str,
    *,
    slot: int,
    port: int,
    generation: int,
    admin_port: int,
) -> Replica:
    """Start one replica process (not yet ready: call :meth:`Replica.wait_ready`)."""
    argv = [
        settings.python, "-m", "wirelab", "targets", "serve", protocol,
        "--host", HOST,
        "--port", str(port),
        "--admin-port", str(admin_port),
        "--redis-url", settings.redis_url,
        "--rate", f"{settings.rate:g}",
        "--payload-size", str(settings.payload_size),
        "--retention", str(settings.retention),
        "--grace", f"{settings.grace:g}s",
        "--drain-delay", f"{settings.drain_delay:g}s",
        "--retry-ms", str(settings.retry_ms),
        "--retry-jitter-ms", str(settings.retry_jitter_ms),
        "--log-level", "warning",
        *settings.extra_args,
    ]  # fmt: skip
    env = None
    if settings.admin_token:
        env = {**os.environ, "WIRELAB_ADMIN_TOKEN": settings.admin_token}
    log_path = settings.log_dir / f"target-{name}.{generation}.log"
    process = ManagedProcess(argv, name=f"target-{name}", env=env, log_path=log_path).start()
    return Replica(
        name=name,
        protocol=protocol,
        slot=slot,
        port=port,
        admin_port=admin_port,
        generation=generation,
        process=process,
        admin_token=settings.admin_token,
    )


def admin_stats(replica: Replica, after: int = 0, timeout: float = 2.0) -> dict[str, Any] | None:
    """The replica's admin ``/stats`` (``None`` when it does not answer)."""
    try:
        return replica.admin("GET", f"/stats?after={after}", timeout=timeout)
    except (OSError, urllib.error.URLError, ValueError):
        return None


# -- the events of the lab, for the run's timeline -------------------------------------------


class LabEvents:
    """What happened to the replicas, in order: ``replica_start``, ``replica_drain``,
    ``replica_stop``, ``kill``... Read by the scenario driver (through the control API) and
    written as annotations on the run's timeline with the time they happened."""

    def __init__(self) -> None:

        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []

    def add(self, kind: str, text: str, *, protocol: str = "", replica: str = "") -> None:
        with self._lock:
            self._events.append(
                {
                    "seq": len(self._events) + 1,
                    "time_ns": time.time_ns(),
                    "kind": kind,
                    "text": text,
                    "protocol": protocol,
                    "replica": replica,
                }
            )

    def after(self, seq: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(event) for event in self._events[max(0, seq) :]]


# -- the whole replicated lab ---------------------------------------------------------------


@dataclass
class Pool:
    """One protocol's replicas and address slots."""

    protocol: str
    slot_ports: list[int]
    #: Replicas serving or draining right now (a draining one still holds its slot).
    replicas: list[Replica] = field(default_factory=list)
    #: Next generation number per replica name (a restart increments it).
    generations: dict[str, int] = field(default_factory=dict)

    def free_slots(self) -> list[int]:
        taken = {replica.slot for replica in self.replicas}
        return [slot for slot in range(len(self.slot_ports)) if slot not in taken]

    def serving(self) -> list[Replica]:
        """Replicas that are not draining, in name order."""
        live = [r for r in self.replicas if r.draining_since is None and r.process.alive]
        return sorted(live, key=lambda r: _name_key(r.name))

    def next_name(self) -> str:
        """The lowest-numbered name no replica holds now (a scaled-down name is reused)."""
        used = {_name_key(replica.name)[1] for replica in self.replicas}
        index = 1
        while index in used:
            index += 1
        return f"{self.protocol}-{index}"


def _name_key(name: str) -> tuple[str, int]:
    protocol, _, index = name.rpartition("-")
    return protocol, int(index) if index.isdigit() else 0


class ReplicaLab:
    """Redis, ``replicas[protocol]`` target processes per protocol, HAProxy; all owned here.

    ``slots[protocol]`` address slots are prepared per protocol (at least one more than the
    replicas, see the module docstring). :meth:`close` stops exactly the processes started.
    """

    def __init__(
        self,
        run_dir: Path,
        settings: ReplicaSettings,
        replicas: dict[str, int],
        slots: dict[str, int] | None = None,
        *,
        redis_url: str | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.settings = settings
        self.wanted = {p: n for p, n in replicas.items() if n > 0}
        self.slots = {p: max((slots or {}).get(p, 0), n + 1) for p, n in self.wanted.items()}
        self.given_redis_url = redis_url
        self.pools: dict[str, Pool] = {}
        self.events = LabEvents()
        self.haproxy: Any = None
        self.redis: ManagedProcess | None = None
        self._locks: dict[str, Any] = {}

        #: Held while a process is started or the lab closes: an action still running in
        #: the control API's thread can never start a process that close() would miss.
        self._launching = threading.Lock()
        self.closed = False

    @property
    def protocols(self) -> list[str]:
        return [p for p in PROTOCOL_ORDER if p in self.wanted]

    def lock(self, protocol: str) -> Any:
        """Actions on one protocol's replicas run one at a time."""

        return self._locks.setdefault(protocol, threading.Lock())

    # -- start and stop ----------------------------------------------------------------

    def start(self) -> dict[str, str]:
        """Start everything and wait until every replica is ready and in the balancer;
        returns the users' URLs (HAProxy frontends, and the gRPC address list)."""

        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        self.settings.redis_url = self.given_redis_url or self._start_redis()
        proxied = [p for p in self.protocols if p in PROXIED]
        ports = reserve_ports(sum(self.slots.values()) + len(proxied))
        for protocol in self.protocols:
            count = self.slots[protocol]
            self.pools[protocol] = Pool(protocol, ports[:count])
            ports = ports[count:]
        frontends = dict(zip(proxied, ports, strict=True))
        launched = []
        for protocol in self.protocols:
            pool = self.pools[protocol]
            for _ in range(self.wanted[protocol]):
                launched.append(self.launch(pool, pool.next_name()))
        for replica in launched:
            replica.wait_ready(self.settings.ready_timeout)
        if proxied:
            backends = [
                Backend(
                    protocol,
                    frontends[protocol],
                    tuple(self.pools[protocol].slot_ports),
                    frozenset(r.slot for r in self.pools[protocol].replicas),
                )
                for protocol in proxied
            ]
            self.haproxy = Haproxy(_binary("haproxy"), self.run_dir / "haproxy", backends)
            self.haproxy.start()
            for protocol in proxied:
                for replica in self.pools[protocol].replicas:
                    self.haproxy.wait_up(protocol, replica.slot)
        return self.urls()

    def _start_redis(self) -> str:
        self.redis, url = start_redis(self.run_dir / "redis")
        return url

    def close(self) -> None:
        """Stop every replica (draining ones included), HAProxy and Redis."""
        with self._launching:
            self.closed = True
        replicas = [replica for pool in self.pools.values() for replica in list(pool.replicas)]
        for replica in replicas:  # all drain at once, then each is waited for
            replica.terminate()
        for replica in replicas:
            replica.stop(grace=self.settings.grace + 2)
        if self.haproxy is not None:
            self.haproxy.stop()
        if self.redis is not None:
            self.redis.stop(grace=5)

    # -- replicas ------------------------------------------------------------------------

    def launch(self, pool: Pool, name: str) -> Replica:
        """Start replica ``name`` in a free slot of ``pool`` (not yet ready, not yet in the
        balancer)."""

        free = pool.free_slots()
        if not free:
            raise ReplicaError(
                f"{pool.protocol}: no free address slot ({len(pool.slot_ports)} prepared); "
                "raise the scenario's replicas or slots"
            )
        slot = free[0]
        with self._launching:
            if self.closed:
                raise ReplicaError("the lab is closing")
            generation = pool.generations.get(name, 0) + 1
            pool.generations[name] = generation
            replica = launch_replica(
                self.settings,
                pool.protocol,
                name,
                slot=slot,
                port=pool.slot_ports[slot],
                generation=generation,
                admin_port=free_port(HOST),
            )
            pool.replicas.append(replica)
        return replica

    def forget(self, replica: Replica) -> None:
        """The replica's process is gone: free its slot."""
        pool = self.pools[replica.protocol]
        if replica in pool.replicas:
            pool.replicas.remove(replica)

    def urls(self) -> dict[str, str]:
        urls: dict[str, str] = {}
        for protocol in self.protocols:
            if protocol in PROXIED:
                urls[protocol] = self.haproxy.url(protocol)
            else:
                ports = self.pools[protocol].slot_ports
                urls[protocol] = ",".join(f"{HOST}:{port}" for port in ports)
        return urls

    def describe(self) -> list[dict[str, Any]]:
        """Every replica process the lab holds now (serving or draining)."""
        return [
            replica.describe()
            for protocol in self.protocols
            for replica in list(self.pools[protocol].replicas)
        ]


def _binary(name: str) -> str:

    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        raise ReplicaError(f"{name} is not installed (apt-get install {name}; see `make test`)")
    return path
