"""The options of a run, each with its flag and its environment variable, in one table.

``wirelab run`` and ``wirelab up`` take them as flags; the cluster roles (``wirelab cluster
master|worker|ui``) read them from the environment the Helm chart sets (``WIRELAB_RUN_*``,
the target URLs and the sinks). Both become the same :class:`RunRequest`, parsed with the
same grammars (:mod:`wirelab.units`), which :func:`wirelab.plan.build_plan` turns into a plan.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exitcodes import UsageError
from .protocols import (
    DEFAULT_PORTS,
    PROTOCOL_ORDER,
    target_urls,
    urls_from_environment,
)
from .units import parse_duration, parse_rate

__all__ = [
    "CLUSTER_SETTINGS",
    "DEFAULT_WORKER_WAIT_S",
    "ROLES",
    "RUN_OPTIONS",
    "ClusterSettings",
    "RunOption",
    "RunRequest",
    "add_run_arguments",
    "request_from_args",
    "request_from_env",
]


#: How long a master waits for its workers to connect before the run cannot complete: long
#: enough for a cluster to pull an image and schedule the pods, and for a loaded machine.
DEFAULT_WORKER_WAIT_S = 300.0


@dataclass(slots=True)
class RunRequest:
    """What the user asked for, before the scenario is read. ``None``: the scenario's."""

    scenario: str = "smoke"
    #: A user's own locustfile, run instead of the scenario's generated users.
    locustfile: Path | None = None
    protocols: list[str] | None = None
    users: int | None = None
    spawn_rate: float | None = None
    duration: float | None = None
    workers: int | None = None
    rate: float | None = None
    reconnect: str | None = None
    replicas: int | None = None
    thresholds: list[str] = field(default_factory=list)
    sinks: list[str] = field(default_factory=list)
    #: Per-protocol target URLs given by the user.
    target_urls: dict[str, str] = field(default_factory=dict)
    redis_url: str | None = None
    report_dir: Path = Path("reports")
    worker_wait_s: float = DEFAULT_WORKER_WAIT_S
    #: How each option given was named (``--workers``, ``WIRELAB_RUN_WORKERS``), for errors.
    labels: dict[str, str] = field(default_factory=dict)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None


@dataclass(frozen=True, slots=True)
class RunOption:
    """One option of a run: where it goes in the request, its flag, its variable, why."""

    dest: str
    flag: str
    #: The variable the cluster roles read it from; ``None``: the local lab's alone.
    env: str | None
    help: str
    parse: Callable[[str], Any] = str
    metavar: str | None = None
    #: A flag given once per value (``--threshold``); in the environment one value per line.
    repeated: bool = False


RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption(
        "scenario",
        "--scenario",
        "WIRELAB_RUN_SCENARIO",
        "built-in scenario name or a YAML/TOML file (default: smoke)",
    ),
    RunOption(
        "locustfile",
        "--locustfile",
        "WIRELAB_RUN_LOCUSTFILE",
        "your own Locust user classes, run instead of the scenario's users with wirelab's "
        "metrics, thresholds and report; the scenario still gives duration, users in total, "
        "workers and thresholds",
        Path,
        "FILE",
    ),
    RunOption(
        "protocols",
        "--protocols",
        "WIRELAB_RUN_PROTOCOLS",
        "comma-separated subset: rest, poll, sse, ws, grpc (default: all)",
        _names,
    ),
    RunOption(
        "users",
        "--users",
        "WIRELAB_RUN_USERS",
        "total users, spread in the scenario's mix",
        _count,
    ),
    RunOption(
        "spawn_rate",
        "--spawn-rate",
        "WIRELAB_RUN_SPAWN_RATE",
        "users started per second, e.g. 20 or 20/s",
        parse_rate,
    ),
    RunOption(
        "duration",
        "--duration",
        "WIRELAB_RUN_DURATION",
        "run time, e.g. 30s, 5m",
        parse_duration,
    ),
    RunOption(
        "workers",
        "--workers",
        "WIRELAB_RUN_WORKERS",
        "Locust worker processes (1 to 64); on a cluster the workers the master waits for",
        _count,
    ),
    RunOption(
        "worker_wait_s",
        "--worker-wait",
        "WIRELAB_RUN_WORKERS_MAX_WAIT",
        f"how long the master waits for its workers (default {DEFAULT_WORKER_WAIT_S:g}s)",
        parse_duration,
        "DURATION",
    ),
    RunOption(
        "rate",
        "--rate",
        "WIRELAB_RUN_ARRIVAL_RATE",
        "open-model arrival rate of request/response users, e.g. 500/s, 3000/m",
        parse_rate,
    ),
    RunOption(
        "reconnect",
        "--reconnect",
        "WIRELAB_RUN_RECONNECT",
        "reconnect policy of stream users, e.g. full_jitter:base=0.5,cap=5",
    ),
    RunOption(
        "thresholds",
        "--threshold",
        "WIRELAB_RUN_THRESHOLDS",
        "add a threshold, e.g. 'ws echo:p99<50ms' or 'sse deliver:gaps==0' (repeatable; "
        "in the environment one per line)",
        metavar="EXPR",
        repeated=True,
    ),
    RunOption(
        "sinks",
        "--sink",
        "WIRELAB_SINKS",
        "also stream metrics here: influxdb://host:8086/db, "
        "influxdb2://host:8086?org=o&bucket=b (repeatable; in the environment comma-separated)",
        metavar="URL",
        repeated=True,
    ),
    RunOption(
        "report_dir",
        "--report-dir",
        "WIRELAB_RUN_REPORT_DIR",
        "where run directories go (default: reports)",
        Path,
    ),
    RunOption("redis_url", "--redis-url", None, "share the lab targets' feed through this Redis"),
    RunOption(
        "replicas",
        "--replicas",
        None,
        "target replicas per protocol (REST/SSE/WS behind HAProxy, gRPC balanced by the "
        "client, one shared Redis feed); overrides the scenario's replicas",
        _count,
    ),
)

_URL_EXAMPLES = {"rest": "http://host:8080", "sse": "http://host:8081", "ws": "ws://host:8082"}


def _argument_type(option: RunOption) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The run options as flags, and where the targets are (``--target-host``, one URL per
    protocol)."""
    for option in RUN_OPTIONS:
        parser.add_argument(
            option.flag,
            dest=option.dest,
            type=_argument_type(option),
            action="append" if option.repeated else "store",
            metavar=option.metavar,
            help=option.help,
        )
    ports = ", ".join(f"{protocol} {port}" for protocol, port in DEFAULT_PORTS.items())
    parser.add_argument(
        "--target-host",
        help=f"use your targets on this host (default ports: {ports}) instead of the lab's",
    )
    for protocol in PROTOCOL_ORDER:
        example = _URL_EXAMPLES.get(protocol, f"host:{DEFAULT_PORTS[protocol]}")
        parser.add_argument(
            f"--{protocol}-url",
            dest=f"{protocol}_url",
            help=f"this protocol's target, e.g. {example}",
        )
    parser.add_argument("--influx-url", help="shorthand for --sink with an InfluxDB URL")


def request_from_args(args: argparse.Namespace) -> RunRequest:
    """The request the command line made."""
    request = RunRequest()
    for option in RUN_OPTIONS:
        value = getattr(args, option.dest, None)
        if value is not None:
            setattr(request, option.dest, value)
            request.labels[option.dest] = option.flag
    if args.influx_url:
        request.sinks = [*request.sinks, args.influx_url]
    if args.target_host:
        request.target_urls = target_urls(args.target_host, DEFAULT_PORTS)
    for protocol in PROTOCOL_ORDER:
        explicit = getattr(args, f"{protocol}_url")
        if explicit:
            request.target_urls[protocol] = explicit
    return request


def request_from_env(env: Mapping[str, str]) -> RunRequest:
    """The request the environment makes (the cluster roles'): every option that has a
    variable, and the target URLs the users read (``WIRELAB_REST_URL``, ...)."""
    request = RunRequest()
    for option in RUN_OPTIONS:
        text = (env.get(option.env) or "").strip() if option.env else ""
        if not text:
            continue
        try:
            if option.repeated:
                separator = "," if option.dest == "sinks" else "\n"
                parts = [part.strip() for part in text.split(separator)]
                value: Any = [option.parse(part) for part in parts if part]
            else:
                value = option.parse(text)
        except ValueError as exc:
            raise UsageError(f"{option.env}: {exc}") from None
        setattr(request, option.dest, value)
        request.labels[option.dest] = option.env
    request.target_urls = urls_from_environment(env)
    return request


# -- the cluster roles' own settings --------------------------------------------------------

#: The roles of ``wirelab cluster`` (see :mod:`wirelab.cluster`).
ROLES = ("master", "ui", "worker")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"not a port number: {text!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Where a role listens and connects, read from :data:`CLUSTER_SETTINGS`."""

    master_host: str = "127.0.0.1"
    master_port: int = 5557
    web_port: int = 8089
    #: A pod listens on every interface; the Service and the NetworkPolicy decide who comes.
    bind_host: str = "0.0.0.0"
    targets_wait_s: float = 300.0
    scratch_dir: Path = Path("/tmp/wirelab")  # noqa: S108 - the pod's emptyDir
    ca_file: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClusterSettings:
        """The settings ``env`` gives; :class:`~wirelab.exitcodes.UsageError` for a bad one."""
        values: dict[str, Any] = {"environment": dict(env)}
        for name, (dest, parse, _) in CLUSTER_SETTINGS.items():
            if env.get(name):
                try:
                    values[dest] = parse(env[name])
                except ValueError as exc:
                    raise UsageError(f"{name}: {exc}") from None
        return cls(**values)


#: The cluster roles' own variables (the run's options have theirs in RUN_OPTIONS):
#: variable → (setting, parser, why).
CLUSTER_SETTINGS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "WIRELAB_MASTER_HOST": ("master_host", str, "the master's Service, which workers connect to"),
    "WIRELAB_MASTER_PORT": ("master_port", _port, "Locust's master port"),
    "WIRELAB_WEB_PORT": ("web_port", _port, "the web UI's port (ui)"),
    "WIRELAB_BIND_HOST": (
        "bind_host",
        str,
        "where the master and the web UI listen (a pod: all its interfaces)",
    ),
    "WIRELAB_RUN_TARGETS_MAX_WAIT": (
        "targets_wait_s",
        parse_duration,
        "how long the master waits for ready targets before exit 3",
    ),
    "WIRELAB_RUN_SCRATCH_DIR": (
        "scratch_dir",
        Path,
        "where ui and worker write the run's locustfiles",
    ),
    "WIRELAB_CA_FILE": (
        "ca_file",
        str,
        "CA bundle the users, and the master's wait for targets, verify TLS targets with",
    ),
}
