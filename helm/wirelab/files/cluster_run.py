"""Run wirelab's load side across pods: the chart's master, web-UI master and worker command.

``wirelab run`` starts its Locust master and workers as processes of one machine. On a
cluster the master and the workers are separate pods, so this launcher (shipped by the Helm
chart in a ConfigMap, run with the image's Python) does the same steps split by role:

``master``  headless: wait for the targets, run the Locust master with ``--expect-workers``,
            then judge the thresholds and write the report exactly as ``wirelab run`` does;
            exits with wirelab's exit code (0 held, 1 a threshold failed, 2 usage error,
            3 the run could not complete). The chart's Job mode runs this.
``ui``      the Locust master with its web UI (the chart's lab mode): people start runs by hand.
``worker``  a Locust worker that connects to the master's Service.

Every role writes the same generated locustfile from the same scenario (or uses the one
given), so master and workers agree on the user classes. Settings come from the environment
the chart sets:

==================================  ===========================================================
``WIRELAB_RUN_SCENARIO``            built-in scenario name or a scenario file (default smoke)
``WIRELAB_RUN_LOCUSTFILE``          a locustfile to run instead of the generated one
``WIRELAB_RUN_PROTOCOLS``           comma-separated subset: rest, poll, sse, ws, grpc
``WIRELAB_RUN_USERS``               total users, spread in the scenario's proportions
``WIRELAB_RUN_SPAWN_RATE``          users started per second
``WIRELAB_RUN_DURATION``            run time (``30s``, ``1h``)
``WIRELAB_RUN_ARRIVAL_RATE``        open-model arrival rate (``500/s``)
``WIRELAB_RUN_THRESHOLDS``          extra thresholds, one per line
``WIRELAB_RUN_WORKERS``             workers the master waits for
``WIRELAB_RUN_WORKERS_MAX_WAIT``    seconds the master waits for them (default 300)
``WIRELAB_RUN_TARGETS_MAX_WAIT``    seconds the master waits for ready targets (default 300)
``WIRELAB_RUN_REPORT_DIR``          where run directories go (default ``/reports``)
``WIRELAB_MASTER_HOST``             the master's Service (workers)
``WIRELAB_MASTER_PORT``             Locust's master port (default 5557)
``WIRELAB_WEB_PORT``                the web UI's port (default 8089)
``WIRELAB_*_URL``, ``WIRELAB_SINKS``  as for ``wirelab run`` (see wirelab.metrics.plugin)
``WIRELAB_CA_FILE``                 CA bundle the users (and the wait for targets) verify
                                    TLS targets against (https://, wss://, grpcs:// URLs)
==================================  ===========================================================
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
URL_VARIABLES = {
    "rest": "WIRELAB_REST_URL",
    "sse": "WIRELAB_SSE_URL",
    "ws": "WIRELAB_WS_URL",
    "grpc": "WIRELAB_GRPC_TARGET",
}


def _say(line: str, stream=None) -> None:
    """One line for the pod's log (``kubectl logs``), at once."""
    stream = stream or sys.stdout
    stream.write(line + "\n")
    stream.flush()


class UsageError(Exception):
    """A setting is wrong: one line on stderr and exit code 2, as ``wirelab run`` does."""


def scenario_from_env(env: Mapping[str, str]):  # -> wirelab.scenarios.Scenario
    """The scenario with the chart's overrides applied (the same ones ``wirelab run`` takes)."""
    from wirelab.scenarios import ScenarioError, load_scenario, parse_rate  # noqa: PLC0415
    from wirelab.units import parse_duration  # noqa: PLC0415

    try:
        scenario = load_scenario(env.get("WIRELAB_RUN_SCENARIO") or "smoke")
        if env.get("WIRELAB_RUN_PROTOCOLS"):
            names = [p.strip() for p in env["WIRELAB_RUN_PROTOCOLS"].split(",") if p.strip()]
            scenario.select_protocols(names)
        if env.get("WIRELAB_RUN_USERS"):
            scenario.scale_users(int(env["WIRELAB_RUN_USERS"]))
        if env.get("WIRELAB_RUN_SPAWN_RATE"):
            scenario.spawn_rate = float(env["WIRELAB_RUN_SPAWN_RATE"])
        if env.get("WIRELAB_RUN_DURATION"):
            scenario.duration = parse_duration(env["WIRELAB_RUN_DURATION"])
        if env.get("WIRELAB_RUN_ARRIVAL_RATE"):
            scenario.rate = parse_rate(env["WIRELAB_RUN_ARRIVAL_RATE"], key="arrival rate")
        if env.get("WIRELAB_RUN_WORKERS"):
            scenario.workers = int(env["WIRELAB_RUN_WORKERS"])
    except (ScenarioError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return scenario


def target_urls_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """The targets the chart points the users at, by protocol."""
    return {protocol: env[name] for protocol, name in URL_VARIABLES.items() if env.get(name)}


TLS_SCHEMES = frozenset({"https", "wss", "grpcs"})


def _uses_tls(url: str) -> bool:
    """A target URL the users reach over TLS (the chart's, when targets.tls is on)."""
    return url.split(",", 1)[0].strip().partition("://")[0].lower() in TLS_SCHEMES


def _host_port(protocol: str, url: str) -> tuple[str, int]:
    first = url.split(",", 1)[0].strip()
    if protocol == "grpc":
        # [grpcs://]dns:///name:port (a headless Service) or plain [grpcs://]host:port
        for scheme in ("grpcs://", "grpc://", "https://", "http://"):
            first = first.removeprefix(scheme)
        first = first.removeprefix("dns:///").removeprefix("dns:").removeprefix("ipv4:")
        host, _, port = first.rpartition(":")
        return host, int(port)
    parts = urlsplit(first)
    default = 443 if parts.scheme in {"https", "wss"} else 80
    return parts.hostname or "", parts.port or default


def _probe_ca(protocol: str, tls: bool, ca_file: str | None) -> str | None:
    """What a readiness probe trusts: the users' CA bundle. gRPC cannot skip verification,
    so without one it trusts the public roots (certifi's), as the gRPC users then do."""
    if tls and protocol == "grpc" and not ca_file:
        import certifi  # noqa: PLC0415 - installed with the kubernetes client

        return certifi.where()
    return ca_file


def wait_for_targets(
    urls: Mapping[str, str], protocols: list[str], timeout: float, ca_file: str | None = None
) -> list[str]:
    """Wait until every needed target answers its readiness check; the ones that never did.

    A target at an https://, wss:// or grpcs:// URL is asked over TLS, trusting ``ca_file``.
    """
    from wirelab.probes import target_ready  # noqa: PLC0415

    waiting = {p: (*_host_port(p, urls[p]), _uses_tls(urls[p])) for p in protocols if p in urls}
    deadline = time.monotonic() + timeout
    while waiting:
        for protocol, (host, port, tls) in list(waiting.items()):
            ca = _probe_ca(protocol, tls, ca_file)
            if target_ready(host, protocol, port, tls=tls, ca_file=ca):
                del waiting[protocol]
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    return sorted(waiting)


def _plan(env: Mapping[str, str]):  # -> wirelab.run.RunPlan
    from wirelab.metrics.sinks import validate_sink_url  # noqa: PLC0415
    from wirelab.run import RunPlan  # noqa: PLC0415
    from wirelab.thresholds import ThresholdError, parse_threshold  # noqa: PLC0415

    scenario = scenario_from_env(env)
    extra = [line.strip() for line in env.get("WIRELAB_RUN_THRESHOLDS", "").splitlines()]
    try:
        thresholds = [parse_threshold(t) for t in [*scenario.thresholds, *filter(None, extra)]]
    except ThresholdError as exc:
        raise UsageError(str(exc)) from None
    sinks = [url.strip() for url in env.get("WIRELAB_SINKS", "").split(",") if url.strip()]
    for url in sinks:
        try:
            validate_sink_url(url, env)
        except ValueError as exc:
            raise UsageError(f"sink {url!r}: {exc}") from None
    missing = [p for p in scenario.protocols if p not in target_urls_from_env(env)]
    if missing:
        raise UsageError(f"no target URL for {', '.join(missing)} (set WIRELAB_*_URL)")
    return RunPlan(
        scenario=scenario,
        thresholds=thresholds,
        report_dir=Path(env.get("WIRELAB_RUN_REPORT_DIR") or "/reports"),
        target_urls=target_urls_from_env(env),
        sinks=sinks,
    )


def _locustfile(plan, env: Mapping[str, str], run_dir: Path) -> Path:
    from wirelab.run import write_locustfile  # noqa: PLC0415

    given = env.get("WIRELAB_RUN_LOCUSTFILE")
    if given:
        return Path(given)
    run_dir.mkdir(parents=True, exist_ok=True)
    return write_locustfile(run_dir, plan.scenario)


def _process_env(plan, env: Mapping[str, str]) -> dict[str, str]:
    from wirelab.run import run_environment  # noqa: PLC0415

    merged = dict(env)
    merged.update(run_environment(plan, plan.target_urls))
    return merged


def master_argv(plan, locustfile: Path, env: Mapping[str, str], *, headless: bool) -> list[str]:
    """The Locust master's command line: LocalLab's, bound to every interface of the pod."""
    scenario = plan.scenario
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--master",
        "--master-bind-host",
        "0.0.0.0",
        "--master-bind-port",
        env.get("WIRELAB_MASTER_PORT", "5557"),
        # Workers an autoscaler adds (or a restarted worker) get their share of users.
        "--enable-rebalancing",
    ]
    if headless:
        argv += [
            "--expect-workers",
            str(scenario.workers),
            "--expect-workers-max-wait",
            env.get("WIRELAB_RUN_WORKERS_MAX_WAIT", "300"),
            "--exit-code-on-error",
            "0",
            "--stop-timeout",
            "5",
            "--csv",
            str(plan.run_dir / "locust"),
            "--headless",
            "--users",
            str(scenario.total_users),
            "--spawn-rate",
            f"{scenario.spawn_rate:g}",
            "--run-time",
            f"{max(1, round(scenario.duration))}s",
            "--only-summary",
        ]
    else:
        argv += ["--web-host", "0.0.0.0", "--web-port", env.get("WIRELAB_WEB_PORT", "8089")]
    return argv


def worker_argv(locustfile: Path, env: Mapping[str, str]) -> list[str]:
    """A Locust worker's command line, connecting to the master's Service."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--worker",
        "--master-host",
        env.get("WIRELAB_MASTER_HOST", "127.0.0.1"),
        "--master-port",
        env.get("WIRELAB_MASTER_PORT", "5557"),
    ]


def run_master(env: Mapping[str, str]) -> int:
    """Headless: the run, the verdict and the report; returns wirelab's exit code."""
    from wirelab.report.build import build_report  # noqa: PLC0415

    plan = _plan(env)
    run_dir = plan.run_dir
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    scenario = plan.scenario
    _say(
        f"wirelab run {plan.run_id}: scenario {scenario.name}, {scenario.total_users} users, "
        f"{scenario.workers} workers, {scenario.duration:g}s"
    )
    started = time.monotonic()
    incomplete: list[str] = []
    wait = float(env.get("WIRELAB_RUN_TARGETS_MAX_WAIT", "300"))
    ca_file = env.get("WIRELAB_CA_FILE") or None
    not_ready = wait_for_targets(plan.target_urls, scenario.protocols, wait, ca_file)
    if not_ready:
        _say(f"wirelab: targets not ready after {wait:g}s: {', '.join(not_ready)}")
        return EXIT_INCOMPLETE
    locustfile = _locustfile(plan, env, run_dir)
    argv = master_argv(plan, locustfile, env, headless=True)
    master = subprocess.Popen(argv, env=_process_env(plan, env))

    def forward(signum: int, frame: object) -> None:
        # The Job is being deleted or the node drained: stop Locust cleanly, then report.
        incomplete.append("interrupted (SIGTERM)")
        master.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    code = master.wait()
    if code != 0:
        incomplete.append(f"the Locust master exited with code {code}")
    return build_report(plan, incomplete=incomplete, wall_time_s=time.monotonic() - started)


def exec_role(role: str, env: Mapping[str, str]) -> None:
    """``ui`` or ``worker``: replace this process with Locust (signals go straight to it)."""
    plan = _plan(env)
    scratch = Path(env.get("WIRELAB_RUN_SCRATCH_DIR") or "/tmp/wirelab")  # noqa: S108 - emptyDir
    locustfile = _locustfile(plan, env, scratch)
    if role == "ui":
        argv = master_argv(plan, locustfile, env, headless=False)
    else:
        argv = worker_argv(locustfile, env)
    os.execve(argv[0], argv, _process_env(plan, env))  # noqa: S606 - exec Locust itself


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in {"master", "ui", "worker"}:
        _say("usage: cluster_run.py master|ui|worker", sys.stderr)
        return EXIT_USAGE
    try:
        if args[0] == "master":
            return run_master(os.environ)
        exec_role(args[0], os.environ)
    except UsageError as exc:
        _say(f"wirelab: error: {exc}", sys.stderr)
        return EXIT_USAGE
    return 0  # pragma: no cover - exec_role does not return


if __name__ == "__main__":
    sys.exit(main())
