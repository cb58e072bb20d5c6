"""The scenario driver: a scenario's ``actions`` on time, on the run's timeline.

Actions run where the timeline is: in the Locust master (or a local run's only process),
as greenlets started when the test starts. Each calls an
:class:`~wirelab.lab.orchestrator.Orchestrator`:

- on the local lab, a :class:`~wirelab.lab.control.ControlClient` (the ``wirelab run``
  parent owns the processes and serves its ``LocalOrchestrator`` on loopback);
- on Kubernetes, :class:`~wirelab.lab.kubernetes.KubernetesOrchestrator` itself, in the
  master pod, when ``WIRELAB_ORCHESTRATOR=kubernetes`` (the chart sets it there): the pod's
  ServiceAccount acts on the target Deployments through the API.

:func:`orchestrator_from_environment` is the one place that chooses; nothing else here knows
which it talks to.

Annotations, written through the metrics plugin (so they reach every sink and
``metrics.json``):

``deploy_start`` / ``deploy_end``   around a ``rolling_restart``
``kill``, ``storm``, ``scale``       when a ``kill``, ``drop_connections``, ``scale`` starts
``replica_start``, ``replica_drain``, ``replica_stop``
                                     what the orchestrator did to each replica, stamped with
                                     the moment it happened (polled from its event log, when
                                     it has one: the local lab's does)
``action_error``                     an action failed, or had not finished when the run ended

:func:`install` wires a driver and the target monitor (:mod:`wirelab.lab.monitor`) into
Locust's events; ``wirelab run`` puts that call into the run's generated locustfile.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent

from ..exitcodes import EXIT_USAGE
from ..lab.control import ControlClient
from ..lab.kubernetes import KubernetesOrchestrator, MissingClientError, require_client
from ..lab.monitor import TargetMonitor
from ..lab.orchestrator import OrchestratorError
from .actions import Action

__all__ = [
    "ACTION_KINDS",
    "ORCHESTRATOR_ENV",
    "ScenarioDriver",
    "install",
    "orchestrator_from_environment",
]

log = logging.getLogger("wirelab.scenarios")

#: The annotation written when each action starts (and, for a deploy, ends).
ACTION_KINDS: dict[str, tuple[str, str | None]] = {
    "rolling_restart": ("deploy_start", "deploy_end"),
    "kill": ("kill", None),
    "drop_connections": ("storm", None),
    "scale": ("scale", None),
}
#: Which orchestrator the master's actions call: ``local`` (the default: the lab control API
#: that ``wirelab run`` describes) or ``kubernetes`` (the chart's master pod).
ORCHESTRATOR_ENV = "WIRELAB_ORCHESTRATOR"
#: Lab events that become annotations, as the orchestrator names them.
REPLICA_EVENTS = frozenset({"replica_start", "replica_drain", "replica_stop"})

Annotate = Callable[..., Any]


class ScenarioDriver:
    """Runs ``actions`` at their ``at`` (seconds after :meth:`start`) against ``orchestrator``.

    Actions overlap if their times do: each runs in its own greenlet. ``results`` collects
    one dict per action: ``action``, ``service``, ``at`` (planned), ``started``/``ended``
    (epoch s), ``ok``, ``detail`` or ``error``.
    """

    def __init__(
        self,
        actions: Iterable[Action],
        orchestrator: Any,
        *,
        annotate: Annotate | None = None,
        event_poll_s: float = 0.5,
    ) -> None:
        self.actions = sorted(actions, key=lambda action: action.at)
        self.orchestrator = orchestrator
        if annotate is None:
            # The plugin imports Locust, which monkey-patches the whole process with gevent:
            # only a Locust process (where the driver runs) may load it, not one that merely
            # imports this module (a test, `wirelab run` writing the locustfile).
            from ..metrics.plugin import annotate as plugin_annotate  # noqa: PLC0415

            annotate = plugin_annotate
        self.annotate = annotate
        self.event_poll_s = event_poll_s
        self.results: list[dict[str, Any]] = []
        self._greenlets: list[gevent.Greenlet] = []
        self._running: dict[int, Action] = {}
        self._events_seen = 0
        self._poller: gevent.Greenlet | None = None
        self.started_at: float | None = None

    # -- life ---------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule every action relative to now."""
        if self.started_at is not None:
            return
        self.started_at = time.monotonic()
        # The loop's timers count from its cached clock, which is as old as the loop's last
        # turn: a process that blocked for a minute would fire a 30 s action at once.
        gevent.get_hub().loop.update_now()
        for index, action in enumerate(self.actions):
            self._greenlets.append(gevent.spawn_later(action.at, self._run, index, action))
        if hasattr(self.orchestrator, "events"):
            self._poller = gevent.spawn(self._poll_events)

    def stop(self) -> None:
        """End of the test: actions not yet started are cancelled; running ones are recorded
        as unfinished (the lab stops their processes); the last replica events are read."""
        for index, action in list(self._running.items()):
            self._error(action, "had not finished when the run ended")
            self._running.pop(index, None)
        gevent.killall(self._greenlets, block=False)
        if self._poller is not None:
            self._poller.kill(block=True, timeout=2)
            self._poller = None
            self._fetch_events()

    def join(self, timeout: float | None = None) -> None:
        """Wait for every scheduled action to finish (tests)."""
        gevent.joinall(self._greenlets, timeout=timeout)
        self._fetch_events()

    # -- one action -------------------------------------------------------------------------

    def _tags(self, action: Action) -> dict[str, str]:
        return {"protocol": action.service} if action.service != "all" else {}

    def _run(self, index: int, action: Action) -> None:
        self._running[index] = action
        start_kind, end_kind = ACTION_KINDS[action.do]
        started = time.time()
        self.annotate(start_kind, f"{action.describe()}: started", **self._tags(action))
        record: dict[str, Any] = {
            "action": action.do,
            "service": action.service,
            "at": action.at,
            "started": started,
        }
        try:
            result = self._call(action)
        except Exception as exc:  # OrchestratorError, or anything the transport raised
            self._running.pop(index, None)
            record.update(ended=time.time(), ok=False, error=str(exc))
            self.results.append(record)
            self._error(action, str(exc))
            return
        self._running.pop(index, None)
        detail = getattr(result, "detail", "") or ""
        record.update(ended=time.time(), ok=True, detail=detail)
        self.results.append(record)
        log.info("action %s done in %.1fs: %s", action.describe(), time.time() - started, detail)
        if end_kind is not None:
            took = time.time() - started
            self.annotate(
                end_kind,
                f"{action.describe()}: done in {took:.1f}s; {detail}",
                **self._tags(action),
            )

    def _call(self, action: Action) -> Any:
        orchestrator = self.orchestrator
        if action.do == "rolling_restart":
            return orchestrator.rolling_restart(action.service, timeout=action.timeout or 300.0)
        if action.do == "kill":
            return orchestrator.kill(action.service, action.count)
        if action.do == "drop_connections":
            return orchestrator.drop_connections(action.service)
        if action.do == "scale":
            assert action.replicas is not None
            return orchestrator.scale(
                action.service, action.replicas, timeout=action.timeout or 120.0
            )
        raise ValueError(f"unknown action {action.do!r}")

    def _error(self, action: Action, message: str) -> None:
        log.error("action %s: %s", action.describe(), message)
        self.annotate("action_error", f"{action.describe()}: {message}", **self._tags(action))

    # -- what the orchestrator did to each replica --------------------------------------------

    def _poll_events(self) -> None:
        while True:
            gevent.sleep(self.event_poll_s)
            self._fetch_events()

    def _fetch_events(self) -> None:
        events_of = getattr(self.orchestrator, "events", None)
        if events_of is None:
            return
        try:
            events = events_of(self._events_seen)
        except Exception as exc:
            log.debug("cannot read the orchestrator's events: %s", exc)
            return
        for event in events:
            self._events_seen = max(self._events_seen, int(event.get("seq", 0)))
            kind = event.get("kind", "")
            if kind not in REPLICA_EVENTS:
                continue
            tags = {key: event[key] for key in ("protocol", "replica") if event.get(key)}
            self.annotate(kind, event.get("text", ""), time_ns=int(event["time_ns"]), **tags)


# -- wiring into Locust -------------------------------------------------------------------------


class _Unavailable:
    """Stands in for an orchestrator that could not be set up: every action fails with the
    reason, so the run's timeline and report say why the deploy or storm never happened
    (a scenario whose actions silently did nothing would pass its thresholds for nothing)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _fail(self, *_: Any, **__: Any) -> Any:
        raise OrchestratorError(self.reason)

    rolling_restart = kill = drop_connections = scale = wait_ready = _fail


def orchestrator_from_environment(env: dict[str, str] | None = None) -> Any:
    """What this process's actions call, as the environment says (``WIRELAB_ORCHESTRATOR``).

    ``kubernetes``: :meth:`KubernetesOrchestrator.from_environment` (the chart's master pod).
    Unset or ``local``: the local lab's control API (``WIRELAB_CONTROL_URL``/``_TOKEN``),
    or ``None`` when there is none. An orchestrator that cannot be set up (no Kubernetes
    credentials, an unknown name) is logged and returned as one whose every action fails
    with that reason; an installation without the ``kubernetes`` extra raises
    :class:`~wirelab.lab.kubernetes.MissingClientError` instead.
    """
    env = dict(os.environ) if env is None else env
    kind = (env.get(ORCHESTRATOR_ENV) or "local").strip().lower()
    if kind == "local":
        return ControlClient.from_environment(env)
    if kind == "kubernetes":
        # Not an orchestrator whose actions fail: an installation without the extra cannot
        # run what was asked, so MissingClientError goes to the caller (exit 2 in install()).
        require_client()
        try:
            return KubernetesOrchestrator.from_environment(env)
        except (OrchestratorError, ImportError, ValueError) as exc:
            reason = f"the Kubernetes orchestrator cannot start: {exc}"
    else:
        reason = f"{ORCHESTRATOR_ENV}={kind!r}: expected local or kubernetes"
    log.error("%s: scenario actions will fail", reason)
    return _Unavailable(reason)


def install(
    actions: list[dict[str, Any]] | str,
    *,
    orchestrator: Any = None,
    events: Any = None,
) -> None:
    """Run ``actions`` (and the target monitor) in this Locust process if it is the master
    or a local run; workers do nothing. Call it from a locustfile (``wirelab run`` does).

    ``orchestrator``: what the actions call. Default: :func:`orchestrator_from_environment`,
    chosen when Locust starts: the local lab's control API (``WIRELAB_CONTROL_URL``/
    ``_TOKEN``, set by ``wirelab run`` on the master), or with
    ``WIRELAB_ORCHESTRATOR=kubernetes`` (the chart's master pod)
    ``KubernetesOrchestrator.from_environment()``, so the built-in scenarios run unchanged on
    a cluster. Without either the actions are skipped with a warning, so a run's locustfile
    still works with plain ``locust -f`` against other targets. The target monitor runs when
    the orchestrator can list its replicas (``replicas()``, as both can).
    """
    # Locust only here, where a Locust process calls it (see ScenarioDriver: importing it
    # monkey-patches the importing process).
    import locust  # noqa: PLC0415
    import locust.runners  # noqa: PLC0415

    parsed = json.loads(actions) if isinstance(actions, str) else actions
    plan = [Action(**item) for item in parsed]
    events = events if events is not None else locust.events
    state: dict[str, Any] = {}

    def on_init(environment: Any, runner: Any = None, **_: Any) -> None:
        if runner is None or isinstance(runner, locust.runners.WorkerRunner):
            return
        try:
            client = orchestrator if orchestrator is not None else orchestrator_from_environment()
        except MissingClientError as exc:
            # Before any load: one line and the usage exit code, as for any bad setting.
            sys.stderr.write(f"wirelab: error: {exc}\n")
            raise SystemExit(EXIT_USAGE) from None
        if client is None:
            if plan:
                log.warning("no lab control API in the environment: scenario actions skipped")
            return
        state["driver"] = ScenarioDriver(plan, client)
        if hasattr(client, "replicas"):
            state["monitor"] = _MonitorLoop(client)

    def on_test_start(**_: Any) -> None:
        for part in ("driver", "monitor"):
            if part in state:
                state[part].start()

    def on_test_stop(**_: Any) -> None:
        for part in ("driver", "monitor"):
            if part in state:
                state[part].stop()

    events.init.add_listener(on_init)
    events.test_start.add_listener(on_test_start)
    events.test_stop.add_listener(on_test_stop)


class _MonitorLoop:
    """The target monitor polled every metrics interval in a greenlet of the master."""

    def __init__(self, client: Any) -> None:
        # The plugin imports Locust: loaded only in the master that runs the monitor.
        from ..metrics.plugin import PluginConfig, base_tags, write_points  # noqa: PLC0415

        self._write_points = write_points

        self.interval = PluginConfig.from_env().interval
        self.monitor = TargetMonitor(
            client.replicas,
            base_tags=base_tags(),
            token=os.environ.get("WIRELAB_ADMIN_TOKEN") or None,
        )
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            try:
                self._write_points(self.monitor.poll())
            except Exception:
                log.exception("target monitor poll failed")
            next_tick += self.interval
            gevent.sleep(max(0.0, next_tick - time.monotonic()))

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)
            self._greenlet = None
        try:
            self._write_points(self.monitor.poll(final=True))
        except Exception:
            log.exception("final target monitor poll failed")
