"""Open model: request/response users started at a constant arrival rate (wrk2's method).

Locust runs a closed loop: each user sends, waits for the answer, sends again. A server that
stalls therefore slows its own load down and its measured latency stays low (coordinated
omission). Here the load comes from a schedule instead, and latency is measured from the
time each request *should* have started.

How it plugs into Locust
------------------------
A request/response user class (``RestUser``, ``WebSocketUser``, ``GrpcUser``) mixes in
:class:`OpenModelUser`. Without ``--rate`` nothing changes: the class runs its Locust tasks.
With ``--rate`` (or the class attribute ``open_rate``) each *user* of that class stops
running tasks and becomes ``--open-concurrency`` *lanes* (default 1): a lane owns the user's
connection (an HTTP client, a WebSocket, a gRPC channel) and waits in the process's idle
pool. One :class:`ArrivalScheduler` per user class and worker process wakes at each intended
start time and hands that start to an idle lane, which runs :meth:`OpenModelUser.open_operation`
(one request: ``rest POST /echo``, ``ws echo``, ``grpc Echo`` by default). So:

- the pool is bounded: its size is the users of that class on the worker x open-concurrency,
  which is the Locust user count you already choose (``-u``), and connections are reused;
- a start that finds no idle lane **waits** for the next lane that frees up, for at most
  ``--open-max-wait`` (default 10 s), and its latency still counts from its intended start
  (wrk2's rule): a server that stalls for a second shows that second in the percentiles
  even when every lane was stuck in it. A start that waited longer is **dropped and
  counted** (``recorder().dropped(protocol, name)``, like k6's ``dropped_iterations``), as
  are the starts still waiting when the test stops and a start the scheduler itself reaches
  more than ``open_late_budget_s`` late (the generator's CPU is the bottleneck). The wait
  is bounded and every start is either run or counted, so the loop cannot silently close
  again; ``--open-max-wait 0`` drops at once, as k6 does;
- each request fires its Locust request event with ``response_time`` measured from the
  intended start, and ``context["service_time_s"]`` measured from the actual send (the
  closed-model figure, kept beside it). A warning is logged when starts are dropped.

Rate across workers
-------------------
``--rate`` is the total for each open-model class across all workers. Each worker runs
``rate / workers`` with its starts offset so that the workers interleave: worker ``slot`` of
``count`` starts at ``anchor + (slot + k * count) / rate`` for k = 0, 1, ..., where the
anchor is the next 100 ms boundary of the wall clock (workers with synchronised clocks
interleave exactly; otherwise each still runs its share evenly spread).

Locust tells a worker its ``worker_index`` but not how many workers there are, and indexes
are not reused when a worker leaves. So the master sends each worker a ``wirelab_topology``
message (slot 0..n-1 among the connected workers, the count, and an optional rate override)
on test start, when a worker connects, and after each spawn; ZeroMQ keeps it ahead of the
spawn message. Without it (a master that did not load wirelab) a worker falls back to
``runner.worker_index`` of ``--expect-workers``, which Locust forwards to workers. The
master may change the rate during a run with :func:`set_rate` (ramping arrival rates).

A worker that has no user of an open-model class still runs that class's schedule as soon
as spawning completes and counts its whole share as dropped, so too few users (``-u`` below
the worker count) is reported loudly instead of silently lowering the rate.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import deque
from typing import Any, ClassVar

import gevent
from gevent.event import Event
from locust import events
from locust.exception import StopTest, StopUser
from locust.runners import MasterRunner, WorkerRunner
from locust.user.task import LOCUST_STATE_RUNNING, LOCUST_STATE_STOPPING, LOCUST_STATE_WAITING

from ..metrics.recorder import recorder
from ..units import parse_duration
from .options import parse_rate, setting

__all__ = [
    "TOPOLOGY_MESSAGE",
    "ArrivalScheduler",
    "OpenModelUser",
    "report",
    "set_rate",
    "topology",
]

log = logging.getLogger(__name__)

TOPOLOGY_MESSAGE = "wirelab_topology"
#: Schedules start on a wall-clock grid this fine, so workers line up without talking.
GRID_S = 0.1
#: How often a warning about dropped starts may be logged per class.
_WARN_EVERY_S = 10.0
#: The scheduler wakes up to this much before a start is due. gevent's loop sleeps in
#: whole milliseconds (epoll rounds up), so aiming at the due time itself would start every
#: request up to 1 ms late and charge that to the server. A start that goes out early is
#: timed from its actual send (never less than its service time).
EARLY_S = 0.001


# -- reporting --------------------------------------------------------------------------


def report(
    environment: Any,
    protocol: str,
    name: str,
    *,
    sent: float,
    done: float,
    intended: float | None = None,
    length: int = 0,
    exception: BaseException | None = None,
    context: dict[str, Any] | None = None,
) -> None:
    """Fire one request event; open-model latency counts from ``intended`` (perf_counter s).

    Closed model (``intended`` is ``None``): ``response_time`` runs from ``sent``. Open
    model: from ``intended`` (or ``sent``, if the start went out up to :data:`EARLY_S`
    early), and ``context["service_time_s"]`` holds ``done - sent``.
    """
    if intended is not None:
        context = dict(context) if context else {}
        context["service_time_s"] = done - sent
        start = min(intended, sent)
    else:
        start = sent
    environment.events.request.fire(
        request_type=protocol,
        name=name,
        response_time=(done - start) * 1000,
        response_length=length,
        exception=exception,
        context=context or {},
    )


# -- topology: which slice of the rate this worker runs -----------------------------------


def topology(environment: Any) -> tuple[int, int]:
    """``(slot, count)`` of this process among the workers sharing the rate."""
    known = getattr(environment, "wirelab_topology", None)
    if known is not None:
        return known
    runner = getattr(environment, "runner", None)
    if isinstance(runner, WorkerRunner):
        expected = getattr(environment.parsed_options, "expect_workers", None) or 1
        index = max(0, runner.worker_index)
        count = max(int(expected), index + 1)
        return index, count
    return 0, 1


def set_rate(environment: Any, rate: float | None) -> None:
    """Change the total arrival rate of every open-model class (``None``: back to ``--rate``).

    Call it on the master (or a local runner); workers get it with the topology message.
    """
    environment.wirelab_rate_override = rate
    runner = getattr(environment, "runner", None)
    if isinstance(runner, MasterRunner):
        _broadcast_topology(environment)


def _broadcast_topology(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return
    workers = sorted(
        runner.clients.ready + runner.clients.spawning + runner.clients.running,
        key=lambda worker: worker.id,
    )
    rate = getattr(environment, "wirelab_rate_override", None)
    for slot, worker in enumerate(workers):
        runner.send_message(
            TOPOLOGY_MESSAGE,
            {"slot": slot, "count": len(workers), "rate": rate},
            client_id=worker.id,
        )


def _on_topology(environment: Any, msg: Any, **_: Any) -> None:
    data = msg.data or {}
    slot, count = int(data.get("slot", 0)), max(1, int(data.get("count", 1)))
    environment.wirelab_topology = (min(slot, count - 1), count)
    environment.wirelab_rate_override = data.get("rate")


@events.init.add_listener
def _on_init(environment: Any, runner: Any = None, **_: Any) -> None:
    runner = runner if runner is not None else getattr(environment, "runner", None)
    if isinstance(runner, WorkerRunner):
        runner.register_message(TOPOLOGY_MESSAGE, _on_topology)
        environment.events.spawning_complete.add_listener(
            lambda **_: _start_idle_schedules(environment)
        )
    elif isinstance(runner, MasterRunner):
        # test_start fires on the master before it sends any spawn message.
        environment.events.test_start.add_listener(_broadcast_topology)
        environment.events.spawning_complete.add_listener(
            lambda **_: _broadcast_topology(environment)
        )
        environment.events.worker_connect.add_listener(lambda **_: _broadcast_topology(environment))
    elif runner is not None:
        environment.events.spawning_complete.add_listener(
            lambda **_: _start_idle_schedules(environment)
        )
    # Stopping starts with the schedule: users that are being stopped are not "busy lanes".
    environment.events.test_stopping.add_listener(lambda **_: _stop_schedules(environment))
    environment.events.test_stop.add_listener(lambda **_: _stop_schedules(environment))


# -- the scheduler ------------------------------------------------------------------------


def _schedulers(environment: Any) -> dict[type, ArrivalScheduler]:
    schedulers = getattr(environment, "wirelab_schedulers", None)
    if schedulers is None:
        schedulers = environment.wirelab_schedulers = {}
    return schedulers


def _scheduler_for(user_class: type[OpenModelUser], environment: Any) -> ArrivalScheduler:
    schedulers = _schedulers(environment)
    scheduler = schedulers.get(user_class)
    if scheduler is None:
        scheduler = schedulers[user_class] = ArrivalScheduler(user_class, environment)
    return scheduler


def _start_idle_schedules(environment: Any) -> None:
    """After spawning: run the schedule of open-model classes with no user here, too."""
    for user_class in getattr(environment, "user_classes", None) or ():
        if (
            isinstance(user_class, type)
            and issubclass(user_class, OpenModelUser)
            and user_class.open_model_rate(environment) is not None
        ):
            _scheduler_for(user_class, environment).ensure_running()


def _stop_schedules(environment: Any) -> None:
    for scheduler in _schedulers(environment).values():
        scheduler.stop()


class _Lane:
    """One operation slot: a user's connection waiting for its next start."""

    __slots__ = ("intended", "wake")

    def __init__(self) -> None:
        self.wake = Event()
        self.intended = 0.0


class ArrivalScheduler:
    """Hands out intended start times of one user class in this process to idle lanes."""

    def __init__(self, user_class: type[OpenModelUser], environment: Any) -> None:
        self.user_class = user_class
        self.environment = environment
        self.protocol = user_class.protocol
        self.name = user_class.open_name
        self.idle: deque[_Lane] = deque()
        #: Intended start times waiting for a lane, oldest first. Never non-empty while a
        #: lane is idle: a lane takes a waiting start before it joins the idle pool.
        self.waiting: deque[float] = deque()
        self.max_wait = user_class.open_model_max_wait(environment)
        self.lanes = 0
        #: Starts handed to a lane (``waited`` of them after waiting for one), dropped for
        #: want of a lane within ``max_wait``, dropped for the scheduler's own lateness.
        self.started = 0
        self.waited = 0
        self.dropped_busy = 0
        self.dropped_late = 0
        self._greenlet: gevent.Greenlet | None = None
        self._stopped = False
        self._last_warning = 0.0
        self._unwarned = 0

    # lanes --------------------------------------------------------------------------

    def add_lane(self) -> _Lane:
        self.lanes += 1
        self.ensure_running()
        return _Lane()

    def remove_lane(self, lane: _Lane) -> None:
        self.lanes -= 1
        with contextlib.suppress(ValueError):  # busy lanes are not in the idle pool
            self.idle.remove(lane)

    def ensure_running(self) -> None:
        self._stopped = False
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        self._stopped = True
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        if self.waiting:
            # Scheduled, never run: the target did not get them, so they are dropped.
            self._drop(len(self.waiting), late=False)
            self.waiting.clear()

    def next_waiting(self) -> float | None:
        """The oldest start still waiting within ``max_wait`` (for a lane that just freed
        up), or ``None``; starts that waited longer are dropped on the way."""
        if not self.waiting:  # the common case, once per operation: no clock read
            return None
        self._expire(time.perf_counter())
        if not self.waiting:
            return None
        self.started += 1
        self.waited += 1
        return self.waiting.popleft()

    def _expire(self, now: float) -> None:
        waiting = self.waiting
        expired = 0
        while waiting and now - waiting[0] > self.max_wait:
            waiting.popleft()
            expired += 1
        if expired:
            self._drop(expired, late=False)

    # the schedule -------------------------------------------------------------------

    def _rate(self) -> float:
        override = getattr(self.environment, "wirelab_rate_override", None)
        if override is not None:
            return float(override)
        return self.user_class.open_model_rate(self.environment) or 0.0

    def _run(self) -> None:
        plan: tuple[float, int, int] | None = None
        anchor = step = 0.0
        k = 0
        budget_floor = self.user_class.open_late_budget_s
        while not self._stopped:
            rate = self._rate()
            slot, count = topology(self.environment)
            if rate <= 0:
                plan = None
                gevent.sleep(0.2)
                continue
            if plan != (rate, slot, count):
                plan = (rate, slot, count)
                wall, perf = time.time(), time.perf_counter()
                anchor_wall = math.ceil(wall / GRID_S) * GRID_S
                step = count / rate
                anchor = perf + (anchor_wall - wall) + slot / rate
                k = 0
            due = anchor + k * step
            now = time.perf_counter()
            if due - now > EARLY_S:
                gevent.sleep(due - now - EARLY_S)
                continue
            budget = max(budget_floor, step)
            late = now - due
            if late > budget:
                # Every start already beyond the budget is dropped in one go.
                skipped = int((late - budget) / step) + 1
                k += skipped
                self._drop(skipped, late=True)
                continue
            k += 1
            if self.idle:
                lane = self.idle.popleft()
                lane.intended = due
                lane.wake.set()
                self.started += 1
            elif self.max_wait > 0:
                self._expire(now)
                self.waiting.append(due)
            else:
                self._drop(1, late=False)

    def _drop(self, count: int, *, late: bool) -> None:
        if late:
            self.dropped_late += count
        else:
            self.dropped_busy += count
        recorder().dropped(self.protocol, self.name, count)
        self._unwarned += count
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            reason = (
                "the scheduler ran late (generator CPU)"
                if late
                else f"no lane was free within {self.max_wait:g} s"
            )
            log.warning(
                "open model %s: %d starts dropped (%s; %d lanes = users x open-concurrency). "
                "Add users or --open-concurrency, or lower --rate.",
                self.name,
                self._unwarned,
                reason,
                self.lanes,
            )
            self._unwarned = 0

    def stats(self) -> dict[str, int]:
        return {
            "started": self.started,
            "waited": self.waited,
            "waiting": len(self.waiting),
            "dropped_busy": self.dropped_busy,
            "dropped_late": self.dropped_late,
            "lanes": self.lanes,
        }


# -- the user side ------------------------------------------------------------------------


class OpenModelUser:
    """Mix into a Locust ``User`` whose requests can run open-model (see the module doc).

    Subclasses set :attr:`protocol` and :attr:`open_name` and implement
    :meth:`open_operation`; the class attributes below may be overridden per class.
    """

    #: Protocol of the request (Locust ``request_type``): rest, ws, grpc.
    protocol: ClassVar[str] = ""
    #: Name of one open-model start, for dropped counts (e.g. ``"ws echo"``).
    open_name: ClassVar[str] = ""
    #: Rate of this class (e.g. ``"200/s"``), instead of ``--rate``.
    open_rate: ClassVar[str | None] = None
    #: Operations in flight per user (``--open-concurrency`` overrides when given).
    open_concurrency: ClassVar[int | None] = None
    #: Starts the scheduler reaches later than this (or one interval, if longer) are dropped.
    open_late_budget_s: ClassVar[float] = 0.1
    #: Longest a start waits for a free lane (``--open-max-wait`` overrides when given).
    open_max_wait_s: ClassVar[float | None] = None

    environment: Any

    @classmethod
    def open_model_rate(cls, environment: Any) -> float | None:
        """Total starts/s across workers for this class, or ``None`` for the closed model."""
        text = setting(environment, "rate", cls.open_rate)
        if text in (None, ""):
            return None
        return parse_rate(text)

    @classmethod
    def open_model_max_wait(cls, environment: Any) -> float:
        """Seconds a start may wait for a free lane before it is dropped (0: never waits)."""
        fallback = None if cls.open_max_wait_s is None else f"{cls.open_max_wait_s:g}"
        text = setting(environment, "open_max_wait", fallback) or "0"
        try:
            return parse_duration(text)
        except ValueError:
            raise ValueError(f"--open-max-wait must be a duration, got {text!r}") from None

    def open_operation(self, intended: float) -> None:
        """Run one start due at ``intended`` (``time.perf_counter()`` seconds) and report it."""
        raise NotImplementedError

    def _lanes_per_user(self) -> int:
        fallback = None if self.open_concurrency is None else str(self.open_concurrency)
        text = setting(self.environment, "open_concurrency", fallback) or "1"
        try:
            return max(1, int(text))
        except ValueError:
            raise ValueError(f"--open-concurrency must be an integer, got {text!r}") from None

    def run(self) -> None:  # replaces User.run when the open model is on
        if type(self).open_model_rate(self.environment) is None:
            super().run()  # type: ignore[misc]
            return
        user: Any = self
        user._state = LOCUST_STATE_RUNNING
        scheduler = _scheduler_for(type(self), self.environment)
        extra: list[gevent.Greenlet] = []
        try:
            try:
                user.on_start()
            except Exception as exc:
                if not isinstance(exc, StopUser | StopTest):
                    log.exception("on_start failed")
                    self.environment.events.user_error.fire(
                        user_instance=self, exception=exc, tb=exc.__traceback__
                    )
                raise
            extra = [
                gevent.spawn(self._lane, scheduler, False)
                for _ in range(self._lanes_per_user() - 1)
            ]
            self._lane(scheduler, True)
            raise StopUser
        except (gevent.GreenletExit, StopUser, StopTest):
            user.on_stop()
        finally:
            gevent.killall(extra, block=False)

    def _lane(self, scheduler: ArrivalScheduler, main: bool) -> None:
        """Wait for a start, run it, repeat; until the user is asked to stop.

        Only the main lane (the user's own greenlet) tells Locust whether the user is busy:
        waiting for a start is not "in a task", so a stop may kill it right there.
        """
        user: Any = self
        lane = scheduler.add_lane()
        try:
            while user._state != LOCUST_STATE_STOPPING:
                intended = scheduler.next_waiting()
                if intended is None:
                    lane.wake.clear()
                    scheduler.idle.append(lane)
                    if main:
                        user._state = LOCUST_STATE_WAITING
                    lane.wake.wait()
                    if main and user._state == LOCUST_STATE_WAITING:
                        user._state = LOCUST_STATE_RUNNING
                    intended = lane.intended
                try:
                    self.open_operation(intended)
                except (gevent.GreenletExit, StopUser, StopTest):
                    raise
                except Exception:
                    # An operation reports its own failures; this is a bug in one.
                    log.exception("open-model operation %s raised", scheduler.name)
        finally:
            scheduler.remove_lane(lane)
