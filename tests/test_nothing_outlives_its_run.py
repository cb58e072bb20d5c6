"""Nothing ``wirelab run`` or ``wirelab up`` starts outlives the ``wirelab`` process.

A CI runner that cancels a job (or hits its timeout) kills the job's process group with
SIGKILL: no signal handler runs, no ``finally``. Each test starts wirelab in a process group
of its own, as the runner does, lets it load a REST target the test started itself (so the
test can read what arrives), kills the group with SIGKILL and asserts that no process of the
run is left long before the scenario would have ended, and that the target's request counters
stand still.

The run's processes are found by a mark the test puts in wirelab's environment: every
process wirelab starts inherits it, the replicas a rolling restart starts mid-run included,
so the search does not depend on the test having seen a process before the kill. One
program hides it: redis-server rewrites the memory that held its environment (to set its
process title), so every process seen as wirelab's descendant while it ran counts too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fixtures.targets import RunningTarget, TargetFactory
from tests.test_run import target_stats
from wirelab.processes import ManagedProcess, free_port

MARK_ENV = "WIRELAB_TEST_RUN_MARK"
#: How long the test waits for the run's processes to be gone. The kernel kills them at once
#: (a parent-death signal); without that they would run on to the scenario's end, which the
#: runs below put far beyond this wait, so the verdict does not depend on the machine's speed.
GONE_WITHIN_S = 60.0
#: The killed runs' scenario length: long after GONE_WITHIN_S.
RUN_FOR = "300s"
#: How long the target is watched for requests after the run's processes are gone.
QUIET_FOR_S = 3.0


class KillableWirelab:
    """``wirelab ARGS`` in a process group of its own, and every process it started."""

    def __init__(self, args: list[str], tmp_path: Path) -> None:
        self.mark = secrets.token_hex(8)
        self.report_dir = tmp_path / "reports"
        self.process = ManagedProcess(
            [sys.executable, "-m", "wirelab", *args, "--report-dir", str(self.report_dir)],
            name="wirelab",
            env={**os.environ, MARK_ENV: self.mark},
            log_path=tmp_path / "wirelab.log",
        )
        #: Every descendant of wirelab seen while it ran (psutil checks a pid's start time).
        self.seen: set[psutil.Process] = set()

    def start(self) -> KillableWirelab:
        self.process.start()
        return self

    def processes(self) -> list[psutil.Process]:
        """Every live process of the run (wirelab itself included): marked or seen."""
        if self.process.alive:
            with contextlib.suppress(psutil.Error):
                self.seen.update(psutil.Process(self.process.pid).children(recursive=True))
        found = [process for process in self.seen if _running(process)]
        for process in psutil.process_iter():
            if process in found:
                continue
            try:
                if (
                    process.environ().get(MARK_ENV) == self.mark
                    and process.status() != psutil.STATUS_ZOMBIE
                ):
                    found.append(process)
            except psutil.Error:
                continue
        return found

    def children(self, *words: str) -> list[psutil.Process]:
        """This run's processes other than wirelab with every word among their arguments
        (a program counts by its name: ``redis-server`` for ``/usr/bin/redis-server``)."""
        found = []
        for process in self.processes():
            if process.pid == self.process.pid:
                continue
            arguments = _cmdline(process)
            try:
                # redis-server rewrites its command line into one string: its name stays.
                arguments.append(process.name())
            except psutil.Error:
                continue
            if set(words) <= {*arguments, *(Path(arg).name for arg in arguments)}:
                found.append(process)
        return found

    def kill_group(self) -> None:
        """What a CI runner does on cancel: SIGKILL to wirelab's whole process group."""
        self.processes()  # the last look at its descendants
        self.process.signal(signal.SIGKILL)

    def left_after(self, timeout: float) -> list[str]:
        """The command lines still running once none is, or after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.processes()
            if not left or time.monotonic() >= deadline:
                return [" ".join(_cmdline(p)) for p in left]
            time.sleep(0.1)

    def log(self) -> str:
        path = self.process.log_path
        return path.read_text(errors="replace")[-3000:] if path and path.exists() else ""

    def clean_up(self) -> None:
        """Whatever happened in the test, no process of the run stays (found by its mark)."""
        self.process.stop(grace=1)
        for process in self.processes():
            try:
                process.kill()
            except psutil.Error:
                continue


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return [f"pid {process.pid}"]


@pytest.fixture
def wirelab(tmp_path: Path) -> Iterator[Callable[..., KillableWirelab]]:
    started: list[KillableWirelab] = []

    def start(*args: str) -> KillableWirelab:
        started.append(KillableWirelab(list(args), tmp_path).start())
        return started[-1]

    try:
        yield start
    finally:
        for each in started:
            each.clean_up()


def served(target: RunningTarget) -> int:
    """Every request that reached the REST target so far, but the test's own ``/stats``."""
    requests = target_stats(target, "rest")["requests"]
    return sum(count for route, count in requests.items() if not route.endswith(" /stats"))


def wait_until(check: Callable[[], bool], timeout: float, what: str, run: KillableWirelab) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} within {timeout:g}s\n{run.log()}")
        if not run.process.alive:
            raise AssertionError(f"wirelab exited before {what}\n{run.log()}")
        time.sleep(0.25)


def assert_load_arriving(target: RunningTarget, run: KillableWirelab) -> None:
    first = served(target)
    wait_until(lambda: served(target) > first + 5, 60, "the load arrived", run)


def assert_nothing_left_and_no_load(target: RunningTarget, run: KillableWirelab) -> None:
    """After the kill: no process of the run left, then no more requests."""
    left = run.left_after(GONE_WITHIN_S)
    assert left == [], f"still running after SIGKILL: {left}"
    settled = served(target)
    time.sleep(QUIET_FOR_S)
    assert served(target) == settled, "load kept arriving after the run was killed"


def test_a_run_killed_with_sigkill_leaves_no_process_and_no_load_behind(
    targets: TargetFactory, wirelab
) -> None:
    rest = targets.start("rest")
    run = wirelab(
        "run", "--scenario", "smoke", "--duration", RUN_FOR, "--workers", "2",
        "--protocols", "rest,poll,sse", "--rest-url", rest.url("rest"), "--no-progress",
    )  # fmt: skip
    assert_load_arriving(rest, run)
    # The one-process lab serves SSE; the master and both workers load the test's target.
    assert len(run.children("targets", "serve", "sse")) == 1
    assert len(run.children("locust", "--master")) == 1
    assert len(run.children("locust", "--worker")) == 2

    run.kill_group()

    assert_nothing_left_and_no_load(rest, run)


def test_a_replicated_run_killed_after_its_deploy_leaves_no_replica_redis_or_haproxy_behind(
    wirelab,
) -> None:
    """A replicated run serves only from its own targets, so here the evidence that the load
    stopped is that no worker is left; the test above watches the requests themselves."""
    run = wirelab(
        "run", "--scenario", "rolling-deploy", "--duration", RUN_FOR, "--replicas", "2",
        "--protocols", "sse", "--no-progress",
    )  # fmt: skip
    wait_until(lambda: len(run.children("locust", "--worker")) == 2, 60, "workers ran", run)
    first = {p.pid for p in run.children("targets", "serve", "sse")}
    assert len(first) == 2
    assert len(run.children("redis-server")) == 1
    assert len(run.children("haproxy", "-db")) == 1

    # The scenario's rolling restart replaces both replicas from the control API's threads;
    # once it is over those threads have ended, and the new replicas must serve on.
    def replaced() -> bool:
        now = {p.pid for p in run.children("targets", "serve", "sse")}
        return len(now) == 2 and not now & first

    wait_until(replaced, 90, "the rolling restart replaced both replicas", run)
    time.sleep(2.0)
    assert len(run.children("targets", "serve", "sse")) == 2, (
        f"a replica started mid-run died before the run did\n{run.log()}"
    )

    run.kill_group()

    assert run.left_after(GONE_WITHIN_S) == [], "a process of the run outlived it"


def test_wirelab_up_killed_with_sigkill_stops_the_load_its_web_ui_started(
    targets: TargetFactory, wirelab
) -> None:
    rest = targets.start("rest")
    # The web UI on a loopback address of its own: the port it was given free a moment ago
    # cannot be taken by the lab's own targets on 127.0.0.1 before the UI binds it.
    web_host = "127.0.0.2"
    port = free_port(web_host)
    run = wirelab(
        "up", "--scenario", "smoke", "--workers", "1", "--protocols", "rest,poll,sse",
        "--rest-url", rest.url("rest"), "--web-host", web_host, "--web-port", str(port),
    )  # fmt: skip
    base = f"http://{web_host}:{port}"

    def worker_connected() -> bool:
        # The UI answers before its worker has connected, and Locust refuses a swarm then.
        try:
            return bool(httpx.get(base + "/stats/requests", timeout=1).json()["workers"])
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    wait_until(worker_connected, 60, "the web UI answered with its worker connected", run)
    answer = httpx.post(base + "/swarm", data={"user_count": 4, "spawn_rate": 4}, timeout=10)
    assert answer.status_code == 200 and answer.json()["success"], answer.text
    assert_load_arriving(rest, run)
    assert len(run.children("targets", "serve", "sse")) == 1

    run.kill_group()

    assert_nothing_left_and_no_load(rest, run)
