"""A ManagedProcess child dies with the process that started it, however that one dies.

Real processes throughout: a small Python parent starts children through ManagedProcess
(from its main thread, from a thread that then ends, and a child that starts a child of its
own), prints their pids, and is killed with SIGKILL, the signal no cleanup code survives.
"""

from __future__ import annotations

import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from wirelab.processes import ManagedProcess

#: "Within a few seconds", with room for a loaded 2-core machine. The kernel signals at once.
GONE_WITHIN_S = 10.0

SPAWN_FROM_MAIN_THREAD = """
    import sys, time
    from wirelab.processes import ManagedProcess
    child = ManagedProcess(["sleep", "300"], name="sleeper").start()
    print(child.pid, flush=True)
    time.sleep(300)
"""

SPAWN_FROM_A_THREAD_THAT_ENDS = """
    import threading, time
    from wirelab.processes import ManagedProcess
    started = []
    thread = threading.Thread(
        target=lambda: started.append(ManagedProcess(["sleep", "300"], name="sleeper").start())
    )
    thread.start()
    thread.join()
    print(started[0].pid, flush=True)
    time.sleep(300)
"""

SPAWN_A_CHILD_THAT_SPAWNS = """
    import pathlib, time
    from wirelab.processes import ManagedProcess
    inner = (
        "import time; from wirelab.processes import ManagedProcess; "
        "grandchild = ManagedProcess(['sleep', '300'], name='sleeper').start(); "
        "print(grandchild.pid, flush=True); time.sleep(300)"
    )
    log = pathlib.Path({log!r})
    child = ManagedProcess([{python!r}, "-c", inner], name="middle", log_path=log).start()
    print(child.pid, flush=True)
    time.sleep(300)
"""


class Parent:
    """A Python process that starts children with ManagedProcess and prints their pids."""

    def __init__(self, code: str, tmp_path: Path) -> None:
        self.log = tmp_path / "parent.log"
        self.process = ManagedProcess(
            [sys.executable, "-c", textwrap.dedent(code)], name="parent", log_path=self.log
        )
        self.children: list[psutil.Process] = []

    def start(self, *, expect: int, logs: tuple[Path, ...] = ()) -> list[psutil.Process]:
        """Start it; the ``expect`` children it (and the ``logs`` it names) report."""
        self.process.start()
        self.process.wait_ready(lambda: len(self._pids(logs)) >= expect, timeout=30)
        self.children = [psutil.Process(pid) for pid in self._pids(logs)]
        return self.children

    def _pids(self, logs: tuple[Path, ...]) -> list[int]:
        lines = []
        for path in (self.log, *logs):
            if path.exists():
                lines += [line for line in path.read_text().split() if line.isdigit()]
        return [int(line) for line in lines]

    def kill(self) -> None:
        """SIGKILL, as a CI runner cancelling a job sends it."""
        self.process.signal(signal.SIGKILL)

    def clean_up(self) -> None:
        """Whatever the test found, nothing it started stays (pids checked by start time)."""
        for child in self.children:
            if child.is_running():
                child.kill()
        self.process.stop(grace=1)


@pytest.fixture
def parent(tmp_path: Path) -> Iterator[Callable[[str], Parent]]:
    made: list[Parent] = []

    def make(code: str) -> Parent:
        made.append(Parent(code, tmp_path))
        return made[-1]

    try:
        yield make
    finally:
        for each in made:
            each.clean_up()


def gone_within(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of ``processes`` still running (not zombies) after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in processes if _running(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_child_is_killed_when_its_parent_is_killed_with_sigkill(parent) -> None:
    spawner = parent(SPAWN_FROM_MAIN_THREAD)
    (child,) = spawner.start(expect=1)
    assert _running(child)

    spawner.kill()

    assert gone_within([child], GONE_WITHIN_S) == []


def test_a_child_started_from_a_thread_that_ended_lives_until_its_parent_dies(parent) -> None:
    """The kernel's parent-death signal follows the forking *thread*: a replica started
    from a control thread must not die when that thread ends."""
    spawner = parent(SPAWN_FROM_A_THREAD_THAT_ENDS)
    (child,) = spawner.start(expect=1)  # printed after the thread was joined
    time.sleep(1.0)
    assert _running(child), "the child died with the thread that started it"

    spawner.kill()

    assert gone_within([child], GONE_WITHIN_S) == []


def test_a_grandchild_goes_too_when_the_chain_above_it_is_killed(parent, tmp_path) -> None:
    middle_log = tmp_path / "middle.log"
    spawner = parent(SPAWN_A_CHILD_THAT_SPAWNS.format(python=sys.executable, log=str(middle_log)))
    middle, grandchild = spawner.start(expect=2, logs=(middle_log,))
    assert grandchild.ppid() == middle.pid

    spawner.kill()

    assert gone_within([middle, grandchild], GONE_WITHIN_S) == []


def test_stopping_a_process_still_works_as_before_from_any_thread(tmp_path: Path) -> None:
    """Forking through the long-lived thread changes nothing for the caller: errors reach
    it, and the child is signalled, waited for and reaped as usual."""
    import threading  # noqa: PLC0415

    outcome: dict[str, object] = {}

    def from_a_thread() -> None:
        try:
            ManagedProcess([str(tmp_path / "no-such-program")], name="missing").start()
        except FileNotFoundError as exc:
            outcome["error"] = exc
        child = ManagedProcess(["sleep", "30"], name="sleeper").start()
        outcome["code"] = child.stop(grace=5)

    thread = threading.Thread(target=from_a_thread)
    thread.start()
    thread.join(timeout=30)
    assert isinstance(outcome.get("error"), FileNotFoundError)
    assert outcome["code"] == -signal.SIGTERM
