"""The ``wirelab`` command line.

Exit codes (headless): 0 success, 1 a threshold failed, 2 usage or configuration error
(one line, no traceback), 3 the run could not complete, 4 generator-bound.

The run commands (``run``, ``up``, ``demo``, ``cluster``) build their plan with
:mod:`wirelab.plan`; their modules are imported when the command runs, so ``--help`` and
``targets serve`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from . import __version__
from .exitcodes import EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, UsageError
from .exposure import WEB_PASSWORD_ENV, WEB_USER_ENV, is_loopback, web_login_missing
from .probes import wait_for_targets
from .protocols import PROTOCOL_ORDER, URL_VARIABLES
from .run_options import (
    CLUSTER_SETTINGS,
    ROLES,
    RUN_OPTIONS,
    ClusterSettings,
    add_run_arguments,
    request_from_args,
)
from .targets.feed.wakeup import WAKE_SLICE
from .units import parse_duration, parse_rate, parse_size


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit code 2), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _argument(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from one of wirelab's parsers: its message is the usage error."""

    def read(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return read


_duration = _argument(parse_duration)
_size = _argument(parse_size)
_events_rate = _argument(lambda text: parse_rate(text, allow_zero=True))


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - one statement per option
    parser = _Parser(prog="wirelab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"wirelab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    targets = commands.add_parser("targets", help="the reference target services")
    targets_commands = targets.add_subparsers(dest="targets_command", required=True)
    serve = targets_commands.add_parser(
        "serve",
        help="serve one protocol, several, or all four in one process sharing one feed",
        description="Serve reference targets. Stops on SIGTERM/SIGINT after draining.",
    )
    serve.add_argument(
        "protocols",
        nargs="+",
        metavar="PROTOCOL",
        help=f"one or more of {', '.join(PROTOCOL_ORDER)}, or 'all'",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, help="port, when serving a single protocol")
    serve.add_argument(
        "--ports",
        metavar="NAME=PORT,...",
        help="explicit port per protocol, e.g. rest=8080,ws=9000 (overrides --port-base)",
    )
    serve.add_argument(
        "--port-base",
        type=int,
        default=8080,
        help="with several protocols: rest, sse, ws, grpc listen on BASE, BASE+1, ...",
    )
    feed = serve.add_argument_group("feed")
    feed.add_argument(
        "--redis-url",
        default=os.environ.get("WIRELAB_REDIS_URL"),
        help="share the feed through this Redis (replicas); default: in-memory",
    )
    feed.add_argument("--feed-key", default="wirelab:feed", help="Redis stream key")
    feed.add_argument(
        "--rate", type=_events_rate, default=10.0, help="events published per second (20, 20/s)"
    )
    feed.add_argument("--payload-size", type=_size, default=64, help="bytes of data per event")
    feed.add_argument("--retention", type=int, default=10_000, help="events kept for resume")
    feed.add_argument(
        "--test-skip-seq",
        default="",
        metavar="N[,M...]",
        help="TEST HOOK: never deliver these seqs to clients (proves gap detection)",
    )
    hooks = serve.add_argument_group("test hooks (ground truth for judging load tools)")
    hooks.add_argument(
        "--test-latency",
        metavar="SHARE%:DURATION,...",
        help="TEST HOOK: hold each REST POST /echo for a service time from this mix, "
        "e.g. 85%%:5ms,15%%:50ms; /stats reports the exact percentiles held",
    )
    hooks.add_argument(
        "--test-stall",
        metavar="STALL/PERIOD",
        help="TEST HOOK: REST POST /echo stops answering for STALL at the end of every "
        "PERIOD, e.g. 1s/5s (what coordinated omission hides)",
    )
    hooks.add_argument(
        "--test-away-every",
        type=int,
        default=0,
        metavar="N",
        help="TEST HOOK: the WebSocket target leaves every Nth echo unanswered and closes "
        "that connection with 1001, as a drain's close crossing a request does",
    )
    behaviour = serve.add_argument_group("behaviour")
    behaviour.add_argument("--grace", type=_duration, default=10.0, help="shutdown grace period")
    behaviour.add_argument(
        "--drain-delay", type=_duration, default=0.0, help="not-ready time before refusing"
    )
    behaviour.add_argument("--heartbeat", type=_duration, default=15.0, help="stream heartbeat")
    behaviour.add_argument("--retry-ms", type=int, default=1000, help="reconnect hint base")
    behaviour.add_argument(
        "--retry-jitter-ms",
        type=int,
        default=2000,
        help="random extra on the reconnect hint while draining, so clients spread out",
    )
    behaviour.add_argument(
        "--max-message-bytes", type=_size, default=1024 * 1024, help="largest client message"
    )
    behaviour.add_argument(
        "--max-connections",
        type=int,
        default=0,
        help="connections (gRPC: and concurrent calls) per process before new ones are refused "
        "with 503 + Retry-After, WS close 1013 or RESOURCE_EXHAUSTED, instead of falling over "
        "(default 0: what the process's file limit allows, after raising it)",
    )
    behaviour.add_argument(
        "--listen-backlog",
        type=int,
        default=0,
        help="accept queue of each listener (default 0: the kernel's most, net.core.somaxconn), "
        "so a reconnect storm waits in the kernel instead of being dropped",
    )
    behaviour.add_argument(
        "--reuse-port",
        action="store_true",
        help="SO_REUSEPORT: several processes serve the same ports and the kernel spreads "
        "connections over them (share the feed with --redis-url)",
    )
    behaviour.add_argument(
        "--wake-slice",
        type=int,
        default=WAKE_SLICE,
        help=f"streams woken per event-loop turn when the feed moves (default {WAKE_SLICE}; "
        "0: all in one turn), so fan-out never keeps new connections waiting",
    )
    behaviour.add_argument(
        "--header-timeout",
        type=_duration,
        default=10.0,
        help="HTTP request headers must arrive within this (slowloris clients get 408)",
    )
    behaviour.add_argument(
        "--send-stall-timeout",
        type=_duration,
        default=10.0,
        help="a stream client that leaves the send buffer full this long is cut (SSE: "
        "closed, WS: 1008) and resumes from the log, so slow readers cannot exhaust memory",
    )
    behaviour.add_argument(
        "--tls-cert",
        help="PEM certificate chain: serve HTTPS, WSS and gRPC over TLS (with --tls-key)",
    )
    behaviour.add_argument("--tls-key", help="PEM private key of --tls-cert")
    behaviour.add_argument(
        "--socket-send-buffer",
        type=_size,
        default=256 * 1024,
        help="SO_SNDBUF per client connection (0: kernel autotuning, up to 4 MiB): bounds "
        "the kernel memory a client that stops reading can pin",
    )
    _add_replica_arguments(serve, behaviour)
    behaviour.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    check = targets_commands.add_parser(
        "check",
        help="wait until targets answer their readiness check (the chart's helm test)",
        description="Ask each target its own readiness signal (/readyz, gRPC health) until it "
        "answers or the timeout passes. https://, wss:// and grpcs:// URLs are asked over "
        "TLS. Exit code 0: all ready; 3: some never were.",
    )
    check.add_argument(
        "checks",
        nargs="+",
        metavar="PROTOCOL=URL",
        help="e.g. rest=http://host:8080 ws=wss://host:8082 grpc=grpcs://host:8083",
    )
    check.add_argument("--timeout", type=_duration, default=60.0, help="how long to wait in all")
    check.add_argument(
        "--ca-file", help="CA bundle TLS targets are verified with (default: $WIRELAB_CA_FILE)"
    )

    run = commands.add_parser(
        "run",
        help="a headless run on the local lab, gated by thresholds",
        description="Run a scenario headless on the local lab (targets, Locust master and "
        "workers as processes). Exit codes: 0 thresholds held, 1 a threshold failed, "
        "2 usage error, 3 the run could not complete, 4 generator-bound.",
    )
    add_run_arguments(run)
    run.add_argument("--no-progress", action="store_true", help="no live progress block")

    up = commands.add_parser("up", help="the local lab with Locust's web UI, until Ctrl-C")
    # Every test started in the UI is judged by the scenario's thresholds and these.
    add_run_arguments(up)
    up.add_argument("--web-port", type=int, help="Locust web UI port (default: a free one)")
    up.add_argument(
        "--web-host",
        default="127.0.0.1",
        help="address of the web UI; beyond loopback it requires a login "
        "(WIRELAB_WEB_USER and WIRELAB_WEB_PASSWORD)",
    )

    _add_cluster_parser(commands)

    scenarios = commands.add_parser("scenarios", help="list the built-in scenarios")
    shown = scenarios.add_mutually_exclusive_group()
    shown.add_argument("--show", metavar="NAME", help="print one scenario's file")
    shown.add_argument(
        "--schema",
        action="store_true",
        help="print the JSON Schema of scenario files (for editors: yaml-language-server)",
    )

    capacity = commands.add_parser(
        "capacity",
        help="what a run needs: workers, cores and memory, from measured per-core figures",
        description="Plan a run: workers (one core each) and memory for N stream connections "
        "at E events/s, or for R requests/s, from the figures measured on the project's "
        "development VM (wirelab/sizing.py names the benchmark of each). A worker is planned "
        "at no more than 70% of its core, under the generator verdict's 85% bound.",
    )
    wanted = capacity.add_mutually_exclusive_group(required=True)
    wanted.add_argument("--connections", type=int, metavar="N", help="stream connections")
    wanted.add_argument("--requests", metavar="RATE", help="request/response rate, e.g. 5000/s")
    capacity.add_argument(
        "--events", default="1/s", metavar="RATE", help="events each connection receives (1/s)"
    )
    capacity.add_argument(
        "--protocol", default="ws", choices=["sse", "ws", "grpc"], help="the streams' protocol"
    )
    capacity.add_argument(
        "--open-files",
        type=int,
        metavar="N",
        help="each worker's file limit (default: a pod's usual 1048576; this machine: `ulimit -n`)",
    )

    bench = commands.add_parser(
        "bench",
        help=f"deprecated: the protocol shoot-out is `{_BENCH_COMMAND}` of a source checkout",
        add_help=False,
    )
    bench.add_argument("bench_args", nargs="*", help=f"see `{_BENCH_COMMAND} --help`")

    influx = commands.add_parser("influx", help="InfluxDB helpers")
    influx_commands = influx.add_subparsers(dest="influx_command", required=True)
    push = influx_commands.add_parser("push", help="load a finished run into an InfluxDB")
    push.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    push.add_argument("--url", required=True, help="influxdb://host:8086/db or influxdb2://...")

    demo = commands.add_parser(
        "demo", help="the smoke scenario on the local lab, with a summary and an HTML report"
    )
    demo.add_argument("--duration", type=_duration, default=45.0, help="how long to run")
    demo.add_argument(
        "--report-dir", type=Path, default=Path("reports"), help="where run directories go"
    )
    return parser


def _add_replica_arguments(
    serve: argparse.ArgumentParser, behaviour: argparse._ArgumentGroup
) -> None:
    """What a replica of a deployed service needs: rebalancing, and the admin port."""
    behaviour.add_argument(
        "--grpc-max-connection-age",
        type=_duration,
        default=0.0,
        help="gRPC: GOAWAY each connection after this long (0: never), so clients "
        "re-balance onto replicas added later",
    )
    admin = serve.add_argument_group("admin")
    admin.add_argument(
        "--admin-port",
        type=int,
        help="also serve /healthz, /readyz, /stats, POST /admin/drain and /admin/drop here "
        "(WIRELAB_ADMIN_TOKEN, when set, is required as a bearer token)",
    )
    admin.add_argument(
        "--admin-host",
        default="127.0.0.1",
        help="address of the admin port (loopback by default: it can drain the process)",
    )


def _add_cluster_parser(commands: Any) -> None:
    defaults = ClusterSettings()
    variables = [(o.env, o.help) for o in RUN_OPTIONS if o.env] + [
        (name, f"{why} (default {getattr(defaults, dest) or 'none'})")
        for name, (dest, _, why) in CLUSTER_SETTINGS.items()
    ]
    variables += [(name, f"{protocol}'s target URL") for protocol, name in URL_VARIABLES.items()]
    variables += [(name, "the web UI's login (ui)") for name in (WEB_USER_ENV, WEB_PASSWORD_ENV)]
    cluster = commands.add_parser(
        "cluster",
        help="the load side as pods: what the Helm chart runs (master, ui, worker)",
        description="One role of a run split across pods, set up by the environment the "
        "Helm chart sets.\n\n"
        "  master  headless: waits for the targets and its workers, runs, judges and\n"
        "          reports; exits with wirelab's exit code (the chart's job mode)\n"
        "  ui      the Locust master with its web UI, always behind a login (lab mode)\n"
        "  worker  a Locust worker that connects to the master",
        epilog="environment:\n" + "\n".join(f"  {name:<30} {why}" for name, why in variables),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cluster.add_argument("role", choices=ROLES)


def _targets(args: argparse.Namespace) -> int:
    return _serve_targets(args) if args.targets_command == "serve" else _check_targets(args)


def _check_targets(args: argparse.Namespace) -> int:
    urls: dict[str, str] = {}
    for check in args.checks:
        protocol, sep, url = check.partition("=")
        if not sep or protocol not in PROTOCOL_ORDER or not url:
            raise UsageError(f"{check!r} is not PROTOCOL=URL ({', '.join(PROTOCOL_ORDER)})")
        urls[protocol] = url
    ca_file = args.ca_file or os.environ.get("WIRELAB_CA_FILE") or None

    def ready(protocol: str) -> None:
        print(f"ok   {protocol}={urls[protocol]}", flush=True)

    try:
        failed = wait_for_targets(urls, args.timeout, ca_file=ca_file, on_ready=ready)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for protocol in failed:
        print(f"FAIL {protocol}={urls[protocol]}", flush=True)
    return EXIT_INCOMPLETE if failed else EXIT_OK


def _target_ports(args: argparse.Namespace) -> dict[str, int]:
    names = list(PROTOCOL_ORDER) if args.protocols == ["all"] else args.protocols
    unknown = [name for name in names if name not in PROTOCOL_ORDER]
    if unknown:
        raise UsageError(
            f"unknown protocol {unknown[0]!r}: choose from {', '.join(PROTOCOL_ORDER)} or all"
        )
    if len(set(names)) != len(names):
        raise UsageError("a protocol is named twice")
    if args.port is not None:
        if len(names) != 1:
            raise UsageError("--port serves one protocol; use --port-base for several")
        return {names[0]: args.port}
    if args.ports:
        explicit = _parse_ports(args.ports)
        missing = [name for name in names if name not in explicit]
        if missing:
            raise UsageError(f"--ports has no port for {missing[0]}")
        return {name: explicit[name] for name in names}
    return {name: args.port_base + PROTOCOL_ORDER.index(name) for name in names}


def _parse_ports(text: str) -> dict[str, int]:
    ports: dict[str, int] = {}
    for item in text.split(","):
        name, sep, port = item.partition("=")
        if not sep or not port.strip().isdigit():
            raise UsageError(f"--ports item {item!r} is not NAME=PORT")
        ports[name.strip()] = int(port)
    return ports


def _serve_targets(args: argparse.Namespace) -> int:
    # The targets' servers (uvloop, grpcio, redis): only for `targets serve`.
    from .logs import configure_logging  # noqa: PLC0415
    from .targets.base import TargetSettings  # noqa: PLC0415
    from .targets.runner import AdminSettings, FeedSettings, serve  # noqa: PLC0415

    ports = _target_ports(args)
    configure_logging(args.log_level)
    settings = TargetSettings(
        host=args.host,
        grace=args.grace,
        drain_delay=args.drain_delay,
        heartbeat=args.heartbeat,
        retry_ms=args.retry_ms,
        retry_jitter_ms=args.retry_jitter_ms,
        max_message_bytes=args.max_message_bytes,
        max_connections=args.max_connections,
        listen_backlog=args.listen_backlog,
        reuse_port=args.reuse_port,
        header_timeout=args.header_timeout,
        send_stall_timeout=args.send_stall_timeout,
        socket_send_buffer=args.socket_send_buffer,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        # A token on the command line would show in `ps`: it comes from the environment.
        token=os.environ.get("WIRELAB_TARGET_TOKEN") or None,
        grpc_max_connection_age=args.grpc_max_connection_age,
        **_test_hooks(args),
    )
    feed = FeedSettings(
        redis_url=args.redis_url,
        key=args.feed_key,
        rate=args.rate,
        payload_size=args.payload_size,
        retention=args.retention,
        skip_seqs=_parse_seqs(args.test_skip_seq),
        wake_slice=args.wake_slice,
    )
    if args.admin_port is not None and not 0 <= args.admin_port <= 65535:
        raise UsageError(f"--admin-port {args.admin_port} is not a port number")
    if (
        args.admin_port is not None
        and not is_loopback(args.admin_host)
        and not os.environ.get("WIRELAB_ADMIN_TOKEN")
    ):
        # The admin port drains and drops this process: beyond loopback it needs a token.
        raise UsageError(
            f"--admin-host {args.admin_host} is reachable beyond loopback: set "
            "WIRELAB_ADMIN_TOKEN so the admin port requires it"
        )
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    for option in ("max_connections", "listen_backlog", "wake_slice", "test_away_every"):
        if getattr(args, option) < 0:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} must be 0 or more, got {getattr(args, option)}")
    admin = AdminSettings(port=args.admin_port, host=args.admin_host)
    return serve(ports, settings, feed, admin)


def _test_hooks(args: argparse.Namespace) -> dict[str, object]:
    from .targets.test_hooks import HookError, LatencyMix, StallPlan  # noqa: PLC0415 - as above

    try:
        return {
            "test_latency": LatencyMix.parse(args.test_latency) if args.test_latency else None,
            "test_stall": StallPlan.parse(args.test_stall) if args.test_stall else None,
            "test_away_every": args.test_away_every,
        }
    except HookError as exc:
        raise UsageError(str(exc)) from None


def _parse_seqs(text: str) -> frozenset[int]:
    try:
        return frozenset(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise UsageError(f"--test-skip-seq {text!r} is not a list of seq numbers") from None


def _run(args: argparse.Namespace) -> int:
    from .plan import build_plan  # noqa: PLC0415 - the run's modules: keep --help fast
    from .run import execute_run  # noqa: PLC0415

    plan = build_plan(request_from_args(args))
    return execute_run(plan, progress=not args.no_progress)


def _up(args: argparse.Namespace) -> int:
    from .plan import build_plan  # noqa: PLC0415 - the run's modules: keep --help fast
    from .run import run_up  # noqa: PLC0415

    missing = None if is_loopback(args.web_host) else web_login_missing(os.environ)
    if missing:
        # The UI starts and stops load: beyond loopback, nobody uses it without a login.
        raise UsageError(f"--web-host {args.web_host} is reachable beyond loopback: {missing}")
    plan = build_plan(request_from_args(args))
    return run_up(plan, web_port=args.web_port, web_host=args.web_host)


def _cluster(args: argparse.Namespace) -> int:
    from .cluster import run_role  # noqa: PLC0415 - the run's modules: keep --help fast

    return run_role(args.role, os.environ)


def _capacity(args: argparse.Namespace) -> int:
    from .sizing import CLUSTER_OPEN_FILES, SizingError, plan_connections, plan_requests  # noqa: PLC0415

    try:
        if args.requests is not None:
            plan = plan_requests(parse_rate(args.requests))
            print(f"{args.requests} of request/response:")
        else:
            events = parse_rate(args.events, allow_zero=True)
            plan = plan_connections(
                args.connections,
                events,
                protocol=args.protocol,
                open_files=args.open_files or CLUSTER_OPEN_FILES,
            )
            print(
                f"{args.connections:,} {args.protocol} connections at {events:g} events/s each "
                f"({args.connections * events:,.0f} deliveries/s):"
            )
    except (SizingError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    for line in plan.lines():
        print(f"  {line}")
    print(f"  helm: --set workers.replicas={plan.workers}  (workers.resources: 1 CPU each)")
    print(f"  local: wirelab run ... --workers {plan.workers}")
    return EXIT_OK


def _scenarios(args: argparse.Namespace) -> int:
    from .scenarios import builtin_names, json_schema, load_scenario  # noqa: PLC0415 - pydantic

    if args.schema:
        print(json.dumps(json_schema(), indent=2))
        return EXIT_OK
    if args.show:
        if args.show not in builtin_names():
            raise UsageError(
                f"unknown scenario {args.show!r}: built-in ones are {', '.join(builtin_names())}"
            )
        print(
            resources.files("wirelab.scenarios").joinpath(f"{args.show}.yaml").read_text(), end=""
        )
        return EXIT_OK
    for name in builtin_names():
        scenario = load_scenario(name)
        shape = f"{scenario.duration:>6g}s  {scenario.total_users:>5} users"
        print(f"{name:<16} {shape}  {scenario.description}")
    return EXIT_OK


def _influx(args: argparse.Namespace) -> int:
    from .influx_push import push_run  # noqa: PLC0415 - the sinks' clients: only for this

    return push_run(args.run_dir, args.url)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo  # noqa: PLC0415 - the run's modules: keep --help fast

    return run_demo(duration=args.duration, report_dir=args.report_dir)


#: Where ``wirelab bench`` went: the console script of benchmarks/ (``wirelab-bench``).
_BENCH_COMMAND = "wirelab-bench"


def _bench(argv: list[str]) -> int:
    """``wirelab bench``, deprecated for one release: the benchmarks are not part of this
    package any more. Where they are installed (a source checkout's venv) every argument
    goes to them as it is, after a warning line; elsewhere it is a usage error."""
    if importlib.util.find_spec("wirelab_bench") is None:
        print(
            f"wirelab: error: `wirelab bench` is now `{_BENCH_COMMAND}` (`make bench`) in a "
            "source checkout; it is not part of the installed package",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(
        f"wirelab: warning: `wirelab bench` is deprecated and goes in the next release: "
        f"run `{_BENCH_COMMAND}`",
        file=sys.stderr,
    )
    return importlib.import_module("wirelab_bench.cli").main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wirelab`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        # The bench has its own parser: hand it every argument as is.
        return _bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        handler = {
            "targets": _targets,
            "run": _run,
            "up": _up,
            "cluster": _cluster,
            "scenarios": _scenarios,
            "capacity": _capacity,
            "influx": _influx,
            "demo": _demo,
        }.get(args.command)
        if handler is not None:
            return handler(args)
    except UsageError as exc:
        print(f"wirelab: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
