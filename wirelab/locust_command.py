"""How wirelab starts Locust: the master's and a worker's command line.

The local lab (:mod:`wirelab.lab.local`) and the cluster roles (:mod:`wirelab.cluster`)
build their processes from these (with the environment of
:meth:`wirelab.plan.RunPlan.process_environment`), so a run is the same Locust invocation
on a laptop and in a pod; only where it binds and how the workers find the master differ.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Headless",
    "WebUi",
    "master_argv",
    "master_problems",
    "worker_argv",
]


@dataclass(frozen=True, slots=True)
class Headless:
    """A run that starts at once and ends by itself: users, their spawn rate, run time."""

    users: int
    spawn_rate: float
    run_time_s: float


@dataclass(frozen=True, slots=True)
class WebUi:
    """Locust's web UI: people start and stop runs; ``login`` turns on wirelab's login."""

    host: str
    port: int
    login: bool = False


def _locust(locustfiles: Sequence[Path], python: str) -> list[str]:
    return [python, "-m", "locust", "-f", ",".join(str(path) for path in locustfiles)]


def master_argv(
    locustfiles: Sequence[Path],
    *,
    bind_host: str,
    bind_port: int,
    workers: int,
    worker_wait_s: float,
    csv_prefix: Path,
    headless: Headless | None = None,
    web: WebUi | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The Locust master of a run: headless (it starts once ``workers`` connected, within
    ``worker_wait_s``) or with its web UI."""
    argv = [
        *_locust(locustfiles, python),
        "--master",
        "--master-bind-host",
        bind_host,
        "--master-bind-port",
        str(bind_port),
        "--expect-workers",
        str(workers),
        "--expect-workers-max-wait",
        f"{worker_wait_s:g}",
        # wirelab's verdict is the thresholds', not Locust's count of failed requests.
        "--exit-code-on-error",
        "0",
        # A lost worker's users move to the others, and workers added later (an autoscaler,
        # a restarted pod) get their share, instead of users silently vanishing.
        "--enable-rebalancing",
        "--stop-timeout",
        "5",
        "--csv",
        str(csv_prefix),
    ]
    if headless is not None:
        argv += ["--headless", "--users", str(headless.users)]
        argv += ["--spawn-rate", f"{headless.spawn_rate:g}"]
        argv += ["--run-time", f"{max(1, round(headless.run_time_s))}s", "--only-summary"]
    if web is not None:
        argv += ["--web-host", web.host, "--web-port", str(web.port)]
        if web.login:
            argv.append("--web-login")
    return argv


def worker_argv(
    locustfiles: Sequence[Path], *, master_host: str, master_port: int, python: str = sys.executable
) -> list[str]:
    """A Locust worker that connects to its master."""
    return [
        *_locust(locustfiles, python),
        "--worker",
        "--master-host",
        master_host,
        "--master-port",
        str(master_port),
    ]


def master_problems(code: int | None) -> list[str]:
    """What the master's exit code (``None``: it did not exit in time) says went wrong."""
    if code is None:
        return ["the Locust master did not finish in time"]
    if code != 0:
        return [f"the Locust master exited with code {code}"]
    return []
