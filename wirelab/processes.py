"""Child processes the lab starts, watches and stops: one mechanism for tests and the local lab.

Every child runs in its own session, so its process id is also the id of a fresh process group.
Stopping sends signals to that group only: whatever the child forked goes too, and nothing this
object did not start is ever signalled.

The group id stays ours for as long as the child has not been reaped (a zombie still holds its
number), so :class:`ManagedProcess` never reaps before it has finished signalling the group.
Under gevent monkey-patching, the hub reaps every child the moment it exits; then the group is
signalled only while no process owns the old pid, the best evidence left that the number has not
been handed to someone else.

Nothing a ManagedProcess starts outlives the process that started it, however that one ends:
SIGKILL included, which no ``finally`` survives (a CI runner cancelling a job kills its
process group, and every child here sits in a group of its own). Each child asks the kernel,
between fork and exec, for SIGKILL the moment its parent dies (``PR_SET_PDEATHSIG``). That
covers programs wirelab cannot teach to watch anything (redis-server, HAProxy) as well as
its own. SIGKILL rather than SIGTERM: a target's SIGTERM starts a drain of up to its grace
period and Locust's a graceful stop, and with the parent gone nobody waits for either; a
load generator must stop loading at once.

The kernel sends that signal when the *thread* that forked the child ends, not the process.
Children started from the main thread (which lives as long as the process) are forked there;
those started from any other thread (the control API's request threads, an orchestrator's
thread pool during a rolling restart) are forked by one daemon thread kept for the purpose,
so that a replica does not die with the short-lived thread that asked for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeVar

import psutil

__all__ = ["ManagedProcess", "free_port", "free_ports", "sigterm_as_interrupt", "wait_for_port"]

_POLL_INTERVAL = 0.05
# SIGKILL cannot be ignored; only a process stuck in the kernel (disk, NFS) outlives this.
_KILL_WAIT = 5.0
_LOG_TAIL_LINES = 20
# Enough bytes for the last lines of any sane log without reading a huge file into memory.
_LOG_TAIL_BYTES = 64 * 1024
#: prctl(2) option: the signal a process gets when the thread that forked it ends.
_PR_SET_PDEATHSIG = 1

_T = TypeVar("_T")


def sigterm_as_interrupt() -> None:
    """Make SIGTERM (a CI runner cancelling, ``kill``) take the same path as Ctrl-C.

    Python's default SIGTERM ends the process at once, skipping every ``finally`` and
    ``with`` exit, so children it started would be left running; a KeyboardInterrupt
    unwinds through them and each ManagedProcess stops its own group.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct TCP ports that were free on ``host`` a moment ago.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out the same
    port twice. Another program may still take a port before the caller binds it.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago (bind port 0, read it back)."""
    return free_ports(1, host)[0]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until ``host:port`` accepts a TCP connection.

    Raises:
        TimeoutError: nothing accepted a connection within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"nothing accepted TCP connections on {host}:{port} within {timeout:g}s "
                f"(last error: {last_error})"
            )
        time.sleep(_POLL_INTERVAL)


# -- dying with the parent -------------------------------------------------------------------


def _load_prctl() -> Callable[..., int] | None:
    """Linux's ``prctl(2)`` from the C library, or ``None`` on a system without it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def _die_with(parent_pid: int) -> Callable[[], None] | None:
    """What the child runs between fork and exec: SIGKILL once ``parent_pid`` is gone.

    It runs in the forked child, where only the forking thread exists: it takes no lock and
    imports nothing, so a lock another thread held at the fork cannot hang it.
    """
    prctl = _PRCTL
    if prctl is None:
        return None

    def arm() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # A parent that died between fork and prctl sends nothing: check by hand, once armed.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return arm


class _Forker:
    """Runs every fork in a thread that lives as long as the process (see the module
    docstring): the calling thread when it is the main one, else one daemon thread.

    The test is the kernel's thread id, not :mod:`threading`'s idea of the current thread:
    under gevent every greenlet runs in the main thread, and forks right there.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], queue.SimpleQueue[object]]]
        self._jobs = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, fork: Callable[[], _T]) -> _T:
        """``fork()``, called from a thread whose end is the process's end."""
        if threading.get_native_id() == os.getpid():
            return fork()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="wirelab-forker", daemon=True
                )
                self._thread.start()
        answer: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._jobs.put((fork, answer))
        outcome = answer.get()
        if isinstance(outcome, _Failed):
            raise outcome.error
        return outcome  # type: ignore[return-value]

    def _serve(self) -> None:
        while True:
            fork, answer = self._jobs.get()
            try:
                answer.put(fork())
            except BaseException as exc:  # handed to the caller, who raises it
                answer.put(_Failed(exc))


class _Failed:
    """An exception raised in the forker thread, on its way to the thread that asked."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_FORKER = _Forker()


class ManagedProcess:
    """A child process in its own process group, stopped together with everything it forked,
    and killed by the kernel if this process dies first (see the module docstring).

    ``env`` is the child's whole environment, as with :class:`subprocess.Popen`; ``None``
    inherits ours. Output (stdout and stderr together) is appended to ``log_path`` when given,
    so a restarted process keeps one log; otherwise it is discarded.

    Use it as a context manager, or call :meth:`start` and, always, :meth:`stop`::

        with ManagedProcess(["redis-server", "--port", "7000"], name="redis") as proc:
            proc.wait_ready(lambda: ping(7000), timeout=10)
    """

    def __init__(
        self,
        argv: list[str],
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        if not argv:
            raise ValueError("argv must name a program")
        self.argv = list(argv)
        self.name = name
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.log_path = log_path
        self._popen: subprocess.Popen[bytes] | None = None
        # True until start() and again once stop() has finished: from then on the pid and the
        # group id may belong to someone else, so nothing may be sent to them.
        self._finished = True
        # Someone other than stop() reaped the child (gevent's hub does); see _may_signal_group.
        self._reaped_elsewhere = False
        self._returncode: int | None = None

    def __repr__(self) -> str:
        state = "running" if self.alive else f"stopped rc={self.returncode}"
        pid = self._popen.pid if self._popen is not None else None
        return f"<ManagedProcess {self.name} pid={pid} {state}>"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the child in a new session (and so a new process group); return ``self``.

        The child is armed to be killed when this process dies, from whichever thread it is
        started.

        A process that was stopped, or exited by itself, may be started again with the same
        argv, environment and log.

        Raises:
            RuntimeError: the child is still running.
        """
        if not self._finished:
            if self.alive:
                raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
            # It exited by itself; stop() reaps it and clears anything it left in its group.
            self.stop()

        log: IO[bytes] | int
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_path.open("ab")
        else:
            log = subprocess.DEVNULL
        die_with_us = _die_with(os.getpid())
        try:
            self._popen = _FORKER.run(
                lambda: subprocess.Popen(
                    self.argv,
                    env=self.env,
                    cwd=self.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    # Safe with threads as used: no lock, no import, no I/O (see _die_with).
                    preexec_fn=die_with_us,  # noqa: PLW1509
                )
            )
        finally:
            # The child holds its own descriptor; ours would only leak.
            if not isinstance(log, int):
                log.close()
        self._finished = False
        self._reaped_elsewhere = False
        self._returncode = None
        return self

    def stop(self, grace: float = 5.0) -> int | None:
        """Stop the child and everything left in its process group; return its exit code.

        Sends SIGTERM to the group, waits up to ``grace`` seconds for every member to exit,
        then sends SIGKILL to the group and reaps the child. The exit code follows
        :attr:`subprocess.Popen.returncode` (negative for a signal). Calling it again, or on a
        process that was never started, is harmless and returns the same code (or ``None``).
        """
        if self._popen is None or self._finished:
            return self._returncode
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self._group_has_live_members() and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL)
        if self._group_has_live_members():
            self._signal_group(signal.SIGKILL)
            # Delivery is asynchronous: wait, so that "stopped" means the whole group is gone.
            deadline = time.monotonic() + _KILL_WAIT
            while self._group_has_live_members() and time.monotonic() < deadline:
                time.sleep(_POLL_INTERVAL / 5)
        try:
            # Reaping last: until here the zombie kept the group id from being recycled.
            self._returncode = self._popen.wait(timeout=_KILL_WAIT)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"{self.name} (pid {self._popen.pid}) survived SIGKILL; is it stuck in I/O?"
            ) from exc
        self._finished = True
        return self._returncode

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child's process group (the child and whatever it forked).

        Raises:
            RuntimeError: the child was never started, has been stopped, or its group id can
                no longer be proven to be ours.
        """
        if not self._may_signal_group():
            raise RuntimeError(f"{self.name} is not running; refusing to signal a stale group")
        self._signal_group(sig)

    def __enter__(self) -> Self:
        if self._finished:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state ------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """Process id of the child, which is also its process group id.

        Raises:
            RuntimeError: the child was never started.
        """
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._popen.pid

    @property
    def alive(self) -> bool:
        """Whether the child itself is still running (not exited, not a zombie)."""
        if self._popen is None or self._finished:
            return False
        return self._peek_exit() is None

    @property
    def returncode(self) -> int | None:
        """Exit code once the child has exited (negative for a signal), else ``None``."""
        if self._popen is None:
            return None
        if self._finished:
            return self._returncode
        return self._peek_exit()

    def wait_ready(self, check: Callable[[], bool], timeout: float) -> None:
        """Poll ``check`` every 50 ms until it returns true.

        An exception from ``check`` counts as "not ready yet", because a server that is still
        starting usually refuses connections. The child is left as it is on failure: stop it
        (the context manager does).

        Raises:
            RuntimeError: the child exited, or ``timeout`` seconds passed; the message carries
                the last lines of its log.
        """
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while True:
            if not self.alive:
                raise RuntimeError(
                    f"{self.name} (pid {self.pid}) exited with code {self.returncode} "
                    f"before it was ready\n{self.log_tail()}"
                )
            try:
                if check():
                    return
                last_error = None
            except Exception as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                detail = f" (last check error: {last_error!r})" if last_error else ""
                raise RuntimeError(
                    f"{self.name} (pid {self.pid}) was not ready after {timeout:g}s{detail}\n"
                    f"{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the child's log, headed by where the log lives."""
        if self.log_path is None:
            return f"(no log for {self.name}: its output went to /dev/null)"
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
                text = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return f"(log {self.log_path} does not exist)"
        tail = text.splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    # -- internals --------------------------------------------------------------------------

    def _peek_exit(self) -> int | None:
        """Exit code of the child, or ``None`` while it runs; never reaps it."""
        assert self._popen is not None
        if self._reaped_elsewhere:
            return self._popen.returncode
        try:
            # WNOWAIT leaves the zombie in place, so the group id cannot be recycled under us.
            info = os.waitid(os.P_PID, self._popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            # Reaped by someone else: gevent's patched Popen still learns the exit status.
            self._reaped_elsewhere = True
            return self._popen.poll()
        if info is None:
            return None
        if info.si_code == os.CLD_EXITED:
            return info.si_status
        return -info.si_status

    def _may_signal_group(self) -> bool:
        """Whether the process group with the child's id is still certainly (or likely) ours."""
        if self._popen is None or self._finished:
            return False
        self._peek_exit()  # notices a reap done elsewhere
        if not self._reaped_elsewhere:
            return True  # the child, alive or a zombie, holds the group id
        # The id is only reused once the whole group has gone, and a new group with this id
        # can only be founded by a new process with this pid; while no such process exists,
        # members of the group are ours.
        return not psutil.pid_exists(self._popen.pid)

    def _signal_group(self, sig: int) -> None:
        if not self._may_signal_group():
            return
        assert self._popen is not None
        # ProcessLookupError: every member has exited already.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, sig)

    def _group_has_live_members(self) -> bool:
        """Whether the child, or anything still in its process group, is running."""
        if self.alive:
            return True
        if not self._may_signal_group():
            return False
        assert self._popen is not None
        pgid = self._popen.pid
        for pid in psutil.pids():
            try:
                if os.getpgid(pid) != pgid:
                    continue
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    return True
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
        return False
