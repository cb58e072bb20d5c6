"""One run plan for every way a run starts: ``wirelab run``, ``wirelab up`` and the cluster roles.

A :class:`~wirelab.run_options.RunRequest` is what the user asked for, from the command
line or from the environment the chart sets (:mod:`wirelab.run_options` reads both).
:func:`build_plan` reads the scenario, applies the request's overrides, checks the result
again with the scenario's own schema (``--workers 0`` fails the check that ``workers: 0``
in a file fails) and then with every check of :data:`PLAN_CHECKS`, and returns the
:class:`RunPlan` that the local lab (:mod:`wirelab.run`) and the cluster roles
(:mod:`wirelab.cluster`) execute.

A check added to the scenario schema or to :data:`PLAN_CHECKS` holds on every path.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .capacity import GRPC_STREAMS_PER_CHANNEL_ENV
from .exitcodes import UsageError
from .locust_command import Headless
from .metrics.sinks import validate_sink_url
from .preflight import check_run_capacity
from .protocols import target_urls, url_environment
from .run_locustfile import LocustfileError, check_locustfile, python_path
from .run_options import DEFAULT_WORKER_WAIT_S, RunRequest
from .scenarios import Scenario, ScenarioError, load_scenario
from .source_addresses import SOURCE_ADDRESSES_ENV
from .thresholds import Threshold, ThresholdError, parse_threshold
from .webview.settings import live_view_environment

__all__ = ["PLAN_CHECKS", "PlanError", "RunPlan", "build_plan"]


class PlanError(UsageError):
    """The request cannot make a run: one line for the user, exit code 2."""


@dataclass(slots=True)
class RunPlan:
    """A scenario with the request's overrides applied and checked, ready to execute."""

    scenario: Scenario
    thresholds: list[Threshold]
    report_dir: Path
    #: Per-protocol target URLs given by the user; the lab starts targets for the rest.
    target_urls: dict[str, str] = field(default_factory=dict)
    sinks: list[str] = field(default_factory=list)
    run_id: str = ""
    interval_s: float = 1.0
    redis_url: str | None = None
    target_args: list[str] = field(default_factory=list)
    locustfile: Path | None = None
    worker_wait_s: float = DEFAULT_WORKER_WAIT_S
    #: Whether the run starts targets of its own for the protocols without a URL (the
    #: local lab); on a cluster every protocol needs one.
    lab_targets: bool = True

    def __post_init__(self) -> None:
        if not self.run_id:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.run_id = f"{self.scenario.name}-{stamp}-{secrets.token_hex(2)}"

    @property
    def run_dir(self) -> Path:
        return self.report_dir / self.run_id

    def for_test(self, run_id: str) -> RunPlan:
        """The plan of one test that this lab's web UI ran as run ``run_id``: the same
        scenario, thresholds and sinks, its directory inside this plan's."""
        return dataclasses.replace(self, report_dir=self.run_dir, run_id=run_id)

    def headless(self) -> Headless:
        """The headless master's shape: the scenario's users, spawn rate and duration."""
        scenario = self.scenario
        return Headless(scenario.total_users, scenario.spawn_rate, scenario.duration)

    def process_environment(self, urls: dict[str, str]) -> dict[str, str]:
        """Environment of the master and the workers: run identity, sinks, target URLs and
        the scenario's user options (see :mod:`wirelab.users.options`)."""
        scenario = self.scenario
        env = {
            "WIRELAB_RUN_ID": self.run_id,
            "WIRELAB_SCENARIO": scenario.name,
            "WIRELAB_REPORT_DIR": str(self.run_dir),
            "WIRELAB_SINKS": ",".join(self.sinks),
            "WIRELAB_INTERVAL": f"{self.interval_s:g}",
            "WIRELAB_RECONNECT": scenario.reconnect,
            **url_environment(urls),
            **live_view_environment(
                (threshold.expression for threshold in self.thresholds), scenario.thresholds
            ),
        }
        if scenario.rate is not None:
            env["WIRELAB_RATE"] = f"{scenario.rate:g}/s"
        # Unset keys leave the users' own defaults (and a variable the user exported) alone.
        if scenario.source_addresses is not None:
            env[SOURCE_ADDRESSES_ENV] = scenario.source_addresses
        if scenario.grpc_streams_per_channel is not None:
            env[GRPC_STREAMS_PER_CHANNEL_ENV] = str(scenario.grpc_streams_per_channel)
        if self.locustfile is not None:
            env["PYTHONPATH"] = python_path(self.locustfile)
        return env

    def headline(self) -> str:
        """The run's first line of output, locally and in a pod's log."""
        scenario = self.scenario
        return (
            f"wirelab run {self.run_id}: scenario {scenario.name}, {scenario.total_users} "
            f"users, {scenario.workers} workers, {scenario.duration:g}s"
        )


def check_target_urls(plan: RunPlan) -> None:
    """Every protocol has a target: given, or (locally) the lab's own; a scenario that acts
    on replicas acts on the lab's own, so it cannot point elsewhere."""
    scenario = plan.scenario
    given = [protocol for protocol in scenario.protocols if protocol in plan.target_urls]
    if not plan.lab_targets:
        missing = [protocol for protocol in scenario.protocols if protocol not in given]
        if missing:
            raise PlanError(f"no target URL for {', '.join(missing)} (set WIRELAB_*_URL)")
    elif scenario.acts_on_targets and given:
        raise PlanError(
            f"scenario {scenario.name!r} acts on its targets; it needs the "
            f"lab's own targets, but --{given[0]}-url/--target-host points elsewhere"
        )


def check_sinks(plan: RunPlan) -> None:
    """Every sink URL parses (its token, when it needs one, is in the environment)."""
    for url in plan.sinks:
        try:
            validate_sink_url(url)
        except ValueError as exc:
            raise PlanError(f"--sink {url!r}: {exc}") from None


#: Where a locustfile checked before the lab's own targets start is told they are (the
#: discard port): a file may read its URLs when imported; nothing connects while Locust
#: only lists its classes.
_NOT_STARTED = ("127.0.0.1", 9)


def check_plan_locustfile(plan: RunPlan) -> None:
    """A user's own locustfile exists, imports and defines Locust users."""
    if plan.locustfile is None:
        return
    host, port = _NOT_STARTED
    lab = target_urls(host, dict.fromkeys(plan.scenario.protocols, port))
    env = url_environment({**lab, **plan.target_urls})
    try:
        check_locustfile(plan.locustfile, env=env)
    except LocustfileError as exc:
        raise PlanError(f"--locustfile {plan.locustfile}: {exc}") from None


def check_capacity(plan: RunPlan) -> None:
    """The users fit this machine: file limits, source ports, the lab's target processes
    (:mod:`wirelab.preflight`). On a cluster each pod is its own machine: not checked here."""
    if not plan.lab_targets:
        return
    problems = check_run_capacity(plan.scenario, plan.target_urls)
    if problems:
        raise PlanError(problems[0])


#: Checks of a whole plan, in order; each raises :class:`PlanError`. Checks of the scenario
#: alone belong in its schema (:mod:`wirelab.scenarios`), which overrides pass through too.
PLAN_CHECKS: list[Callable[[RunPlan], None]] = [
    check_target_urls,
    check_sinks,
    check_plan_locustfile,
    check_capacity,
]


def build_plan(request: RunRequest, *, lab_targets: bool = True) -> RunPlan:
    """Read the scenario, apply ``request``, check everything; :class:`PlanError` if not.

    ``lab_targets``: whether the run starts its own targets for protocols without a URL.
    """
    scenario = _scenario(request)
    try:
        thresholds = [parse_threshold(t) for t in [*scenario.thresholds, *request.thresholds]]
    except ThresholdError as exc:
        raise PlanError(str(exc)) from None
    plan = RunPlan(
        scenario=scenario,
        thresholds=thresholds,
        report_dir=request.report_dir,
        target_urls=dict(request.target_urls),
        sinks=list(request.sinks),
        redis_url=request.redis_url,
        locustfile=request.locustfile,
        worker_wait_s=request.worker_wait_s,
        lab_targets=lab_targets,
    )
    for check in PLAN_CHECKS:
        check(plan)
    return plan


def _scenario(request: RunRequest) -> Scenario:
    """The scenario with the request's overrides, checked as a whole again."""
    try:
        # Checked as loaded first: a wrong key in the file is the file's, not an override's.
        scenario = load_scenario(request.scenario).revalidated()
    except ScenarioError as exc:
        raise PlanError(str(exc)) from None
    try:
        if request.protocols:
            scenario.select_protocols(request.protocols)
        if request.users is not None:
            scenario.scale_users(request.users)
        for name in ("spawn_rate", "duration", "workers", "rate", "reconnect"):
            value = getattr(request, name)
            if value is not None:
                setattr(scenario, name, value)
        if request.replicas is not None:
            scenario.replicas = {"*": request.replicas}
        return scenario.revalidated()
    except ScenarioError as exc:
        label = request.labels.get(re.split(r"[.\[]", exc.key, maxsplit=1)[0])
        if label is not None:
            # The value came from a flag or a variable: name that, not the scenario's key.
            raise PlanError(f"{label}: {exc.problem}") from None
        raise PlanError(str(exc)) from None
