"""Before anything starts: does the run fit this machine?

:func:`capacity_problems` is a pure function of a scenario and the host's limits
(:class:`~wirelab.limits.HostLimits`) to the reasons it would not fit, one line each naming
the limit and the fix. ``wirelab run`` and ``wirelab up`` stop with exit code 2 on the first,
before a process of the run is started. What each connection and process costs is
:mod:`wirelab.capacity`'s.

Checked:

- **workers**: the busiest worker's users' sockets plus its own descriptors fit its file limit;
- **source ports**: the connections to one target address and port from one source address
  fit the ephemeral port range;
- **the lab's targets**: on the one-process lab, each protocol fits in at most
  ``MAX_REPLICAS`` processes sharing its port (with the spare ones a scenario's kills get);
  on the replicated lab, everything proxied fits
  HAProxy's one process (two descriptors per connection), and the gRPC users, who connect to
  every replica, fit each one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from .capacity import (
    CLIENT_PROCESS_FDS,
    target_max_connections,
    target_processes,
)
from .exposure import is_loopback
from .lab.haproxy import default_maxconn
from .lab.replicas import PROXIED
from .limits import HostLimits, ephemeral_range, host_limits
from .scenarios import USER_PROTOCOL, Scenario
from .scenarios.actions import MAX_REPLICAS
from .source_addresses import LOOPBACK_BLOCK, SOURCE_ADDRESSES_ENV, parse_source_addresses

__all__ = [
    "capacity_problems",
    "check_run_capacity",
    "client_source_addresses",
    "connections_by_protocol",
]


def _grpc_slots(scenario: Scenario) -> int:
    """Connections one gRPC user holds: one per address it balances over."""
    return scenario.slot_counts().get("grpc", 1) if scenario.replicated else 1


def connections_by_protocol(scenario: Scenario) -> dict[str, int]:
    """Client connections each target protocol's address receives: one per user."""
    counts: dict[str, int] = {}
    for key, count in scenario.users.items():
        if count > 0:
            protocol = USER_PROTOCOL[key]
            counts[protocol] = counts.get(protocol, 0) + count
    return counts


def _client_fds(scenario: Scenario) -> tuple[int, int]:
    """Descriptors of the busiest worker's users, and of all users together."""
    workers = max(1, scenario.workers)
    grpc_slots = _grpc_slots(scenario)
    busiest = total = 0
    for key, count in scenario.users.items():
        if count <= 0:
            continue
        # Locust spreads each user class over the workers: the busiest gets the rounding.
        per_worker = math.ceil(count / workers)
        if USER_PROTOCOL[key] == "grpc":
            # gRPC users share a worker's channels, each holding a connection per address.
            busiest += math.ceil(per_worker / scenario.streams_per_channel) * grpc_slots
            total += math.ceil(count / scenario.streams_per_channel) * grpc_slots
        else:
            busiest += per_worker
            total += count
    return busiest, total


def _worker_problems(scenario: Scenario, limits: HostLimits) -> list[str]:
    busiest, total = _client_fds(scenario)
    need = busiest + CLIENT_PROCESS_FDS
    if need <= limits.open_files:
        return []
    room = limits.open_files - CLIENT_PROCESS_FDS
    if room <= 0:
        fix = "raise the file limit (ulimit -n, systemd LimitNOFILE, a container's nofile)"
    else:
        fix = f"raise --workers to {math.ceil(total / room)}"
    return [
        f"{scenario.total_users} users on {scenario.workers} workers need ~{need} file "
        f"descriptors per worker, above this machine's limit of {limits.open_files} per "
        f"process: {fix}"
    ]


def _port_problems(
    scenario: Scenario, limits: HostLimits, source_addresses: int | Mapping[str, int]
) -> list[str]:
    problems = []
    low, high = ephemeral_range()
    for protocol, users in connections_by_protocol(scenario).items():
        # gRPC users share channels: one TCP connection carries many of their streams.
        connections = (
            math.ceil(users / scenario.streams_per_channel) if protocol == "grpc" else users
        )
        if isinstance(source_addresses, Mapping):
            sources = source_addresses.get(protocol, 1)
        else:
            sources = source_addresses
        per_source = math.ceil(connections / max(1, sources))
        if per_source > limits.ephemeral_ports:
            problems.append(
                f"{connections} {protocol} connections to one target address and port from "
                f"{sources} source address(es) need {per_source} source ports each, "
                f"above the {limits.ephemeral_ports} ephemeral ports "
                f"(net.ipv4.ip_local_port_range {low}-{high}): spread the clients over "
                f"{math.ceil(connections / limits.ephemeral_ports)} source addresses"
            )
    return problems


def _replica_problems(
    scenario: Scenario, limits: HostLimits, connections: dict[str, int], lab: Collection[str]
) -> list[str]:
    problems = []
    cap = target_max_connections(limits.open_files)
    grpc = connections.get("grpc", 0) if "grpc" in lab else 0
    if grpc > cap:
        # A gRPC user balances over every replica itself, so each replica has all of them.
        problems.append(
            f"{grpc} grpc connections on {scenario.replica_counts()['grpc']} replicas need "
            f"{grpc} per replica, above the {cap} one target process holds with this "
            f"machine's file limit of {limits.open_files}: lower the gRPC users, since each "
            "one connects to every replica"
        )
    # The proxied protocols' replicas share what passes HAProxy's one process, which holds
    # two descriptors per connection: it is full long before any replica is.
    proxied = sum(connections.get(protocol, 0) for protocol in lab if protocol in PROXIED)
    maxconn = default_maxconn(limits.open_files)
    if proxied > maxconn:
        problems.append(
            f"{proxied} connections through the lab's HAProxy need ~{2 * proxied + 200} file "
            f"descriptors in its one process, above this machine's limit of "
            f"{limits.open_files}: at most {maxconn} fit; lower the users, or leave out "
            "replicas and actions (the lab then spreads each protocol over processes that "
            "share its port, with no proxy)"
        )
    return problems


def _process_problems(
    limits: HostLimits, connections: dict[str, int], spare: Mapping[str, int]
) -> list[str]:
    problems = []
    for protocol, count in connections.items():
        processes = target_processes(count, limits.open_files) + spare.get(protocol, 0)
        if processes > MAX_REPLICAS:
            problems.append(
                f"{count} {protocol} connections need {processes} target processes with this "
                f"machine's file limit of {limits.open_files}, above the {MAX_REPLICAS} the "
                "lab starts per protocol: raise the file limit (ulimit -n, LimitNOFILE)"
            )
    return problems


def capacity_problems(
    scenario: Scenario,
    limits: HostLimits,
    *,
    lab_protocols: Collection[str] = (),
    source_addresses: int | Mapping[str, int] = 1,
) -> list[str]:
    """Why ``scenario`` cannot run within ``limits``: one line per problem, each naming the
    limit and the fix; empty when it fits.

    ``lab_protocols``: the protocols the lab's own targets serve (the others are the user's,
    whose limits are not ours to know). ``source_addresses``: how many source addresses the
    clients spread over (the ephemeral ports are per source address), in all or per
    protocol (see :func:`client_source_addresses`).
    """
    problems = _worker_problems(scenario, limits)
    problems += _port_problems(scenario, limits, source_addresses)
    connections = connections_by_protocol(scenario)
    if scenario.replicated:
        problems += _replica_problems(scenario, limits, connections, lab_protocols)
    else:
        lab = {p: n for p, n in connections.items() if p in lab_protocols}
        problems += _process_problems(limits, lab, scenario.kill_counts())
    return problems


def client_source_addresses(
    scenario: Scenario, target_urls: Mapping[str, str], env: Mapping[str, str] | None = None
) -> dict[str, int]:
    """How many source addresses each protocol's clients connect from: the ones the
    scenario's ``source_addresses`` or ``WIRELAB_SOURCE_ADDRESSES`` gives, else 254 per
    worker for a loopback target (the lab's own, or a URL on 127.0.0.0/8;
    :mod:`wirelab.users.source_addresses`), else one. gRPC cannot bind a source address:
    one."""
    env = os.environ if env is None else env
    given = (scenario.source_addresses or env.get(SOURCE_ADDRESSES_ENV, "")).strip()
    explicit = len(parse_source_addresses(given)) if given else 0
    counts = {}
    for protocol in scenario.protocols:
        url = target_urls.get(protocol)
        if protocol == "grpc":
            counts[protocol] = 1
        elif explicit:
            counts[protocol] = explicit
        elif url is None or all(is_loopback(host) for host in _hosts(url)):
            counts[protocol] = LOOPBACK_BLOCK * max(1, scenario.workers)
        else:
            counts[protocol] = 1
    return counts


def _hosts(url: str) -> list[str]:
    """The host of each comma-separated address in a target URL."""
    hosts = []
    for raw in url.split(","):
        part = raw.strip()
        hosts.append(urlsplit(part if "://" in part else f"tcp://{part}").hostname or "")
    return hosts


def check_run_capacity(scenario: Scenario, target_urls: Mapping[str, str]) -> list[str]:
    """:func:`capacity_problems` of ``scenario`` on this machine, for a run whose own targets
    serve every protocol without a URL in ``target_urls``; raises this process's file limit
    first, so the run's workers and targets inherit it."""
    lab = [protocol for protocol in scenario.protocols if protocol not in target_urls]
    sources = client_source_addresses(scenario, target_urls)
    return capacity_problems(scenario, host_limits(), lab_protocols=lab, source_addresses=sources)
