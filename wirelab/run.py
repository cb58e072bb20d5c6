"""``wirelab run`` (headless, gated by thresholds) and ``wirelab up`` (web UI) on the local lab.

A run is a :class:`~wirelab.plan.RunPlan` (:mod:`wirelab.plan`) executed here: targets
(ours, unless the user points at theirs) → a Locust master and N worker processes in real
distributed mode (:mod:`wirelab.locust_command`) → results written by the master's wirelab
plugin into the run directory → thresholds, ``summary.json``, ``junit.xml`` and
``report.html`` (:mod:`wirelab.report.build`). ``wirelab up`` writes the same files for each
test started in its web UI, in a directory of its own (:mod:`wirelab.report.lab`). The
cluster roles (:mod:`wirelab.cluster`) execute the same plan across pods.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .exitcodes import EXIT_INCOMPLETE, EXIT_OK
from .exposure import is_loopback
from .lab.local import LabError, LocalLab, TargetSpec, local_lab
from .locust_command import master_problems
from .plan import RunPlan
from .preflight import connections_by_protocol
from .processes import sigterm_as_interrupt
from .report.build import build_report
from .report.lab import LabReports
from .report.progress import Progress
from .run_locustfile import write_locustfiles


def _start_lab(lab: LocalLab, plan: RunPlan) -> tuple[dict[str, str], dict[str, str]]:
    """Start the targets the run needs; the users' URLs and extra environment of the master."""
    scenario = plan.scenario
    missing = [name for name in scenario.protocols if name not in plan.target_urls]
    urls = dict(plan.target_urls)
    if not missing:
        return urls, {}
    spec = TargetSpec(
        protocols=missing,
        rate=scenario.feed.rate,
        payload_size=scenario.feed.payload_size,
        retention=scenario.feed.retention,
        redis_url=plan.redis_url,
        extra_args=plan.target_args,
        connections=connections_by_protocol(scenario),
        acted_on=bool(scenario.actions),
        spare=scenario.kill_counts(),
    )
    if not scenario.replicated:
        urls.update(lab.start_targets(spec))
        if not scenario.actions:
            return urls, {}
        # Storms and kills act on the processes themselves: no balancer, no replicas.
        counts = ", ".join(
            f"{p} x{sum(t.protocols == (p,) for t in lab.target_processes)}" for p in missing
        )
        print(f"  lab: {counts} target processes on each protocol's port, one Redis feed, no proxy")
        return urls, lab.serve_control()
    shape = scenario.lab
    replicas = {p: n for p, n in scenario.replica_counts().items() if p in missing}
    slots = {p: n for p, n in scenario.slot_counts().items() if p in missing}
    started, master_env = lab.start_replicas(
        replicas,
        slots,
        spec=spec,
        grace=shape.grace,
        drain_delay=shape.drain_delay,
        retry_ms=shape.retry_ms,
        retry_jitter_ms=shape.retry_jitter_ms,
        min_ready=shape.min_ready,
    )
    urls.update(started)
    counts = ", ".join(f"{p} x{n}" for p, n in replicas.items())
    print(f"  lab: {counts} replicas; REST/SSE/WS behind HAProxy, gRPC client-balanced")
    return urls, master_env


def execute_run(plan: RunPlan, *, progress: bool = True) -> int:
    """Run the plan headless; returns the exit code (0, 1 or 3)."""
    run_dir = plan.run_dir
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    print(plan.headline())
    scenario = plan.scenario
    incomplete: list[str] = []
    started = time.monotonic()
    sigterm_as_interrupt()
    try:
        with local_lab(run_dir) as lab:
            try:
                _start_everything(lab, plan, headless=plan.headless())
            except LabError as exc:
                print(f"wirelab: {exc}", file=sys.stderr)
                return EXIT_INCOMPLETE
            ticker = Progress(run_dir, scenario.duration, enabled=progress)
            # The master first waits for its workers, then runs, then stops its users.
            timeout = plan.worker_wait_s + scenario.duration + 120
            code = lab.wait_master(timeout, on_tick=ticker.tick)
            ticker.finish()
            incomplete += master_problems(code)
    except KeyboardInterrupt:
        incomplete.append("interrupted")
    elapsed = time.monotonic() - started
    return build_report(plan, incomplete=incomplete, wall_time_s=elapsed)


def _start_everything(lab: LocalLab, plan: RunPlan, **master: Any) -> dict[str, str]:
    """Targets (unless given), the locustfiles, the master and its workers; returns the URLs."""
    urls, master_env = _start_lab(lab, plan)
    locustfiles = write_locustfiles(plan.run_dir, plan.scenario, plan.locustfile)
    env = plan.process_environment(urls)
    workers = plan.scenario.workers
    lab.start_master(
        locustfiles,
        env={**env, **master_env},
        workers=workers,
        worker_wait_s=plan.worker_wait_s,
        **master,
    )
    lab.start_workers(locustfiles, workers, env=env)
    return urls


def run_up(plan: RunPlan, *, web_port: int | None, web_host: str = "127.0.0.1") -> int:
    """``wirelab up``: the lab with Locust's web UI, until Ctrl-C stops every process; each
    test started in the UI gets its report as soon as it stops."""
    run_dir = plan.run_dir
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    sigterm_as_interrupt()
    reports = LabReports(plan)
    try:
        with local_lab(run_dir) as lab:
            try:
                urls = _start_everything(
                    lab,
                    plan,
                    web_port=web_port,
                    web_host=web_host,
                    # Beyond loopback the UI asks for a login (wirelab.webauth, credentials
                    # from the environment); `wirelab up` refused to start without them.
                    web_login=not is_loopback(web_host),
                )
            except LabError as exc:
                print(f"wirelab: {exc}", file=sys.stderr)
                return EXIT_INCOMPLETE
            for protocol, url in urls.items():
                print(f"  {protocol:<5} {url}")
            print(f"Locust web UI: http://{web_host}:{lab.web_port}  (Ctrl-C stops everything)")
            print(f"logs and results: {run_dir}  (a directory in it per test started in the UI)")
            while lab.master is not None and lab.master.alive:
                reports.poll()
                time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping the lab ...")
    reports.close()  # the test that was running when the lab stopped
    return EXIT_OK
