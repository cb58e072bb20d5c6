"""The cluster roles, ``wirelab cluster master|ui|worker``: what the Helm chart's pods run.

``wirelab run`` starts its Locust master and workers as processes of one machine; on a
cluster they are pods, so the same plan (:mod:`wirelab.plan`) is executed split by role:

``master``  headless (the chart's job mode): wait for the targets, run the Locust master
            until ``--expect-workers`` workers ran the scenario, judge the thresholds and
            write the report as ``wirelab run`` does; exits with wirelab's exit code.
``ui``      the Locust master with its web UI (lab mode), always behind wirelab's login:
            whoever reaches the Service could otherwise start load against any URL.
            Each test started in the UI gets its run directory and report as soon as it
            stops (:mod:`wirelab.report.lab`, which says why they are built here).
``worker``  a Locust worker that connects to the master's Service.

Every role builds its plan from the same environment (the run options' variables and the
cluster settings, both in :mod:`wirelab.run_options`) and writes the same locustfiles,
so master and workers agree on the user classes. ``master`` and ``ui`` supervise Locust
(SIGTERM is passed on, then the last report written); ``worker`` replaces this process with
Locust, so the pod's signals reach Locust itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .exitcodes import EXIT_INCOMPLETE
from .exposure import web_login_missing
from .locust_command import WebUi, master_argv, master_problems, worker_argv
from .plan import PlanError, RunPlan, build_plan
from .probes import wait_for_targets
from .report.build import build_report
from .report.lab import LabReports
from .run_locustfile import write_locustfiles
from .run_options import ClusterSettings, request_from_env

__all__ = ["run_master", "run_role", "run_ui"]


def _say(line: str) -> None:
    """One line for the pod's log (``kubectl logs``), at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _environment(plan: RunPlan, settings: ClusterSettings) -> dict[str, str]:
    return {**settings.environment, **plan.process_environment(plan.target_urls)}


def run_master(plan: RunPlan, settings: ClusterSettings) -> int:
    """Headless: the run, the verdict and the report; returns wirelab's exit code."""
    _say(plan.headline())
    started = time.monotonic()
    wait = settings.targets_wait_s
    not_ready = _wait_for_targets(plan, settings)
    if not_ready:
        _say(f"wirelab: targets not ready after {wait:g}s: {', '.join(not_ready)}")
        return EXIT_INCOMPLETE
    (plan.run_dir / "logs").mkdir(parents=True, exist_ok=True)
    locustfiles = write_locustfiles(plan.run_dir, plan.scenario, plan.locustfile)
    argv = _master(plan, settings, locustfiles, headless=plan.headless())
    master = subprocess.Popen(argv, env=_environment(plan, settings))
    incomplete: list[str] = []

    def forward(signum: int, frame: object) -> None:
        # The Job is being deleted or the node drained: stop Locust cleanly, then report.
        incomplete.append("interrupted (SIGTERM)")
        master.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    incomplete += master_problems(master.wait())
    return build_report(plan, incomplete=incomplete, wall_time_s=time.monotonic() - started)


def run_ui(plan: RunPlan, settings: ClusterSettings) -> int:
    """Lab mode: the master with its web UI, until the pod stops; a report per test.

    Returns Locust's exit code.
    """
    locustfiles = write_locustfiles(settings.scratch_dir, plan.scenario, plan.locustfile)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    web = WebUi(settings.bind_host, settings.web_port, login=True)
    argv = _master(plan, settings, locustfiles, web=web)
    reports = LabReports(plan, say=_say)
    master = subprocess.Popen(argv, env=_environment(plan, settings))
    # The pod is stopping: Locust writes the test that runs, then the report is built.
    signal.signal(signal.SIGTERM, lambda signum, frame: master.send_signal(signal.SIGTERM))
    while True:
        try:
            code = master.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            reports.poll()
        except KeyboardInterrupt:  # Ctrl-C by hand reached Locust too: wait for it to quit
            continue
    reports.close()
    return code


def _wait_for_targets(plan: RunPlan, settings: ClusterSettings) -> list[str]:
    """Wait for the targets the plan's users need; the protocols that never got ready."""
    urls = {p: plan.target_urls[p] for p in plan.scenario.protocols}
    return wait_for_targets(urls, settings.targets_wait_s, ca_file=settings.ca_file)


def _master(
    plan: RunPlan, settings: ClusterSettings, locustfiles: list[Path], **mode: Any
) -> list[str]:
    return master_argv(
        locustfiles,
        bind_host=settings.bind_host,
        bind_port=settings.master_port,
        workers=plan.scenario.workers,
        worker_wait_s=plan.worker_wait_s,
        csv_prefix=plan.run_dir / "locust",
        **mode,
    )


def exec_worker(plan: RunPlan, settings: ClusterSettings) -> None:
    """``worker``: replace this process with Locust (signals go straight to it)."""
    locustfiles = write_locustfiles(settings.scratch_dir, plan.scenario, plan.locustfile)
    argv = worker_argv(
        locustfiles, master_host=settings.master_host, master_port=settings.master_port
    )
    sys.stdout.flush()
    os.execve(argv[0], argv, _environment(plan, settings))  # noqa: S606 - Locust itself


def run_role(role: str, env: Mapping[str, str]) -> int:
    """Run one role with the settings of ``env``; the exit code (``worker`` execs)."""
    settings = ClusterSettings.from_env(env)
    missing = web_login_missing(env) if role == "ui" else None
    if missing:
        raise PlanError(f"the web UI always requires a login: {missing}")
    plan = build_plan(request_from_env(env), lab_targets=False)
    if role == "master":
        return run_master(plan, settings)
    if role == "ui":
        return run_ui(plan, settings)
    exec_worker(plan, settings)
    return 0  # pragma: no cover - exec_worker does not return
