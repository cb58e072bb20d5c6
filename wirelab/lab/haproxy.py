"""A real HAProxy in front of the local lab's REST, SSE and WebSocket replicas.

Why HAProxy, and why these settings:

- **One frontend per protocol**, each on its own loopback port, so the users' URLs stay one
  per protocol (``--sse-url http://127.0.0.1:P``) exactly as behind a production balancer.
- **Health checks on ``/readyz``** (``option httpchk``), every 300 ms, down after one failure
  and up after one success: a draining replica answers 503 at once, and the balancer must
  notice within the target's drain delay, before the listener closes. A check may take up
  to ``timeout check`` (5 s) to be answered: in a reconnect storm the check waits in the
  replica's accept queue behind thousands of handshakes, and taking a slow answer for a dead
  replica (the interval, 300 ms, is the timeout otherwise) took every replica of a protocol
  out at once, turning the storm into 503s for everyone (seen at 2,400 clients on two
  workers; 2 s was still too short on a loaded machine). A draining replica's 503 and a dead
  one's refused connection are still seen at the next check.
- **``balance leastconn``** for the long-lived streams (SSE, WebSocket): after a drain the
  returning clients go to the emptiest replicas, the newly started one first. REST uses
  ``roundrobin``: its requests are short and uniform.
- **SSE: ``option http-no-delay``**: an event stream is the interactive use HAProxy's
  packet-filling delay (MSG_MORE) was not made for; without it every handshake and many
  events arrive ~200 ms late.
- **``timeout tunnel 1h``**: a WebSocket becomes a tunnel after its upgrade, and the client
  and server timeouts would otherwise cut idle streams. ``timeout server``/``client`` of 75 s
  sit above the targets' 15 s heartbeats and the 55 s long poll.
- **REST: ``option http-server-close``**, a new server connection per request. Reusing idle
  server connections races with a draining replica closing them (the request lands on a
  socket that is being closed: a 502 nobody caused); on loopback a connect costs
  microseconds. ``retry-on conn-failure empty-response 503`` with ``option redispatch``
  sends a request that met a replica in the instant its listener closed (refused, or the
  polite 503 of a connection accepted just before) to another replica. Replaying is safe
  because nothing was processed, and the REST users' POSTs carry an Idempotency-Key anyway.

How replicas come and go: **server slots prepared in advance**, driven through the runtime
API (the admin-level stats socket), not by regenerating the config and reloading. Each
backend lists a fixed number of ``server`` lines on ports reserved at start; slots without a
replica are in maintenance. Starting a replica in a free slot is ``set server B/S state
ready`` (health checks then bring it UP); draining one is ``state drain`` (no new
connections, established ones untouched); a freed slot goes back to ``maint``. A soft reload
(``haproxy -sf``) would instead start a new HAProxy process for every replica change while the
old one keeps every established tunnel until it closes: during a deploy the balancer itself
would be redeployed a dozen times, and its process juggling would be part of what we
measure. The runtime API changes one server's state and nothing else.
"""

from __future__ import annotations

import contextlib
import resource
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..processes import ManagedProcess, wait_for_port

HOST = "127.0.0.1"
#: Health check cadence: fast enough that a drain delay of 0.5-1 s covers it.
CHECK_INTER_MS = 300
#: Runtime states as ``show servers state`` reports ``srv_op_state`` (0 stopped, 2 running).
_OP_RUNNING = 2
#: ``srv_admin_state`` bits: maintenance (forced, inherited or by resolution: 0x04 only
#: remembers that the config said ``disabled``), drain (forced or inherited).
_ADMIN_MAINT = 0x01 | 0x02 | 0x20
_ADMIN_DRAIN = 0x08 | 0x10


class HaproxyError(RuntimeError):
    """HAProxy refused a command or did not start."""


@dataclass(frozen=True, slots=True)
class Backend:
    """One protocol behind HAProxy: its frontend port and its prepared server slots."""

    protocol: str
    frontend_port: int
    #: The port of every server slot, in slot order (slot ``i`` is server ``s{i+1}``).
    slot_ports: tuple[int, ...]
    #: Slots that start enabled (a replica is there from the start).
    enabled: frozenset[int] = frozenset()

    @property
    def balance(self) -> str:
        return "roundrobin" if self.protocol == "rest" else "leastconn"


def server_name(slot: int) -> str:
    return f"s{slot + 1}"


def default_maxconn(open_files: int | None = None) -> int:
    """As many connections as the file descriptor limit allows (``open_files``, default this
    process's, which HAProxy inherits): each proxied connection holds two descriptors
    (client and server side), plus some for checks and listeners."""
    soft = open_files if open_files is not None else resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(256, min(50_000, (soft - 200) // 2))


def render_config(
    backends: list[Backend], *, stats_socket: Path, maxconn: int | None = None
) -> str:
    """The whole ``haproxy.cfg`` for ``backends`` (see the module docstring for the why)."""
    maxconn = maxconn or default_maxconn()
    lines = [
        "# Generated by wirelab for one local-lab run; see wirelab/lab/haproxy.py for the why.",
        "global",
        f"    maxconn {maxconn}",
        f"    stats socket {stats_socket} mode 600 level admin",
        "    # Health check results are state changes worth a log line; traffic is not.",
        "    log stdout format short local0 notice",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option dontlognull",
        f"    maxconn {maxconn}",
        "    timeout connect 2s",
        "    timeout client 75s",
        "    timeout server 75s",
        "    timeout tunnel 1h",
        "    timeout http-request 10s",
        "    timeout check 5s",
        "    timeout queue 5s",
        "    retries 3",
        "    option redispatch 1",
        "",
    ]
    for backend in backends:
        name = backend.protocol
        lines += [
            f"frontend {name}_in",
            f"    bind {HOST}:{backend.frontend_port}",
            f"    default_backend {name}",
            "",
            f"backend {name}",
            f"    balance {backend.balance}",
            "    option httpchk GET /readyz",
            "    http-check expect status 200",
        ]
        if name == "sse":
            # Every event must leave at once: HAProxy otherwise holds small chunks back to
            # fill packets (MSG_MORE), which shows as ~200 ms on every handshake and event.
            lines.append("    option http-no-delay")
        if name == "rest":
            lines += [
                "    option http-server-close",
                "    retry-on conn-failure empty-response 503",
            ]
        check = f"check inter {CHECK_INTER_MS}ms fastinter {CHECK_INTER_MS}ms rise 1 fall 1"
        for slot, port in enumerate(backend.slot_ports):
            disabled = "" if slot in backend.enabled else " disabled"
            lines.append(f"    server {server_name(slot)} {HOST}:{port} {check}{disabled}")
        lines.append("")
    return "\n".join(lines)


class Haproxy:
    """One HAProxy process for the lab, and its runtime API."""

    def __init__(self, binary: str, workdir: Path, backends: list[Backend]) -> None:
        self.binary = binary
        self.workdir = workdir
        self.backends = {backend.protocol: backend for backend in backends}
        # A UNIX socket path has room for ~107 bytes; a run directory may be deeper than that.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="wirelab-haproxy-"))
        self.socket_path = self._socket_dir / "admin.sock"
        self.config_path = workdir / "haproxy.cfg"
        self.process: ManagedProcess | None = None

    def url(self, protocol: str) -> str:
        port = self.backends[protocol].frontend_port
        return f"{'ws' if protocol == 'ws' else 'http'}://{HOST}:{port}"

    def start(self, *, timeout: float = 15.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            render_config(list(self.backends.values()), stats_socket=self.socket_path)
        )
        check_log = self.workdir / "haproxy-check.log"
        check = ManagedProcess(
            [self.binary, "-c", "-q", "-f", str(self.config_path)],
            name="haproxy-check",
            log_path=check_log,
        )
        with check:
            deadline = time.monotonic() + 10
            while check.alive and time.monotonic() < deadline:
                time.sleep(0.02)
        if check.returncode != 0:
            alerts = [line for line in check_log.read_text().splitlines() if "ALERT" in line]
            raise HaproxyError(
                f"haproxy rejected its generated config {self.config_path}: "
                f"{alerts[0] if alerts else 'see ' + str(check_log)}"
            )
        # -db: stay in the foreground (ManagedProcess owns it); -W is not needed without
        # reloads, which is the point of using the runtime API (see the module docstring).
        self.process = ManagedProcess(
            [self.binary, "-db", "-f", str(self.config_path)],
            name="haproxy",
            log_path=self.workdir / "haproxy.log",
        ).start()
        try:
            for backend in self.backends.values():
                wait_for_port(HOST, backend.frontend_port, timeout)
            self.process.wait_ready(self.socket_path.exists, timeout)
        except (TimeoutError, RuntimeError) as exc:
            raise HaproxyError(f"haproxy did not start: {str(exc).splitlines()[0]}") from None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=5)
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    # -- runtime API -----------------------------------------------------------------

    def command(self, text: str, timeout: float = 5.0) -> str:
        """Send one runtime API command; returns HAProxy's answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.socket_path))
            sock.sendall(text.encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def _set_state(self, protocol: str, slot: int, state: str) -> None:
        answer = self.command(f"set server {protocol}/{server_name(slot)} state {state}").strip()
        if answer:
            raise HaproxyError(f"haproxy: set {protocol}/{server_name(slot)} {state}: {answer}")

    def enable(self, protocol: str, slot: int) -> None:
        """Let health checks bring the slot's server in (``state ready``)."""
        self._set_state(protocol, slot, "ready")

    def drain(self, protocol: str, slot: int) -> None:
        """No new connections to the slot; established ones carry on (``state drain``)."""
        self._set_state(protocol, slot, "drain")

    def disable(self, protocol: str, slot: int) -> None:
        """Take the slot out entirely (``state maint``): it is free for the next replica."""
        self._set_state(protocol, slot, "maint")

    def server_states(self, protocol: str) -> dict[int, str]:
        """Slot -> ``up``, ``down``, ``drain`` or ``maint``, as HAProxy sees it now."""
        answer = self.command(f"show servers state {protocol}")
        states: dict[int, str] = {}
        for line in answer.splitlines():
            fields = line.split()
            # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
            if len(fields) < 7 or not fields[0].isdigit() or fields[1] != protocol:
                continue
            slot = int(fields[3].removeprefix("s")) - 1
            operational, admin = int(fields[5]), int(fields[6])
            if admin & _ADMIN_MAINT:
                states[slot] = "maint"
            elif admin & _ADMIN_DRAIN:
                states[slot] = "drain"
            else:
                states[slot] = "up" if operational == _OP_RUNNING else "down"
        return states

    def wait_up(self, protocol: str, slot: int, timeout: float = 10.0) -> None:
        """Wait until HAProxy's health checks have the slot UP (it receives traffic)."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                state = self.server_states(protocol).get(slot, "unknown")
                if state == "up":
                    return
            time.sleep(0.05)
        raise HaproxyError(
            f"haproxy did not see {protocol}/{server_name(slot)} up within {timeout:g}s "
            f"(last state: {state})"
        )
