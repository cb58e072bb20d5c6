"""The host's limits on connections, read (and the file limit raised) in one place.

Three kernel limits decide how many connections one machine can hold and how fast it can
take new ones:

- **open files per process** (``RLIMIT_NOFILE``): every socket is a file descriptor. Many
  systems start processes with a low soft limit (1024) under a much higher hard one, and a
  load tester that does not raise it fails at a thousand connections. Every wirelab process
  that holds connections (Locust workers, a local run's process, target processes) calls
  :func:`raise_open_files_limit` when it starts;
- **the listen backlog** (``net.core.somaxconn``): connections the kernel has completed but
  the server has not accepted yet. A reconnect storm arrives faster than any process accepts;
  what does not fit in the backlog is dropped and retried by the client a second or more
  later, which shows as slow or failed handshakes. Listeners ask for :func:`listen_backlog`;
- **ephemeral ports** (``net.ipv4.ip_local_port_range``): one source address can hold about
  this many connections to one target address and port.
"""

from __future__ import annotations

import contextlib
import resource
import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "HostLimits",
    "ephemeral_port_count",
    "ephemeral_range",
    "host_limits",
    "listen_backlog",
    "open_files_limit",
    "raise_open_files_limit",
]

_PROC_SYS = Path("/proc/sys")


def _read_ints(path: str) -> list[int] | None:
    try:
        return [int(part) for part in (_PROC_SYS / path).read_text().split()]
    except (OSError, ValueError):
        return None


def open_files_limit() -> int:
    """This process's soft file-descriptor limit now."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def raise_open_files_limit() -> int:
    """Raise this process's file limit as far as it may go; returns the new soft limit.

    Soft goes up to hard, which any process may do. With ``CAP_SYS_RESOURCE`` (root outside
    a restricted container) both go up to ``fs.nr_open``, the kernel's ceiling; without it the
    attempt is refused and the hard limit is where it stops. Children inherit the result,
    so a parent that raises its own limit raises theirs.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = (_read_ints("fs/nr_open") or [0])[0]
    if hard != resource.RLIM_INFINITY and ceiling > hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, ceiling))
            return ceiling
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return open_files_limit()


def listen_backlog() -> int:
    """The longest accept queue the kernel grants a listener (``net.core.somaxconn``).

    ``listen()`` silently caps a larger request at this value, so asking for exactly it
    is asking for the most there is, and says so in the server's figures.
    """
    value = _read_ints("net/core/somaxconn")
    return value[0] if value else socket.SOMAXCONN


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of source ports for outgoing connections (inclusive)."""
    value = _read_ints("net/ipv4/ip_local_port_range")
    if value and len(value) == 2:
        return value[0], value[1]
    return 32768, 60999


def ephemeral_port_count() -> int:
    """Connections one source address can hold to one target address and port."""
    low, high = ephemeral_range()
    return high - low + 1


@dataclass(frozen=True, slots=True)
class HostLimits:
    """The limits :mod:`wirelab.capacity` plans a run against."""

    #: File descriptors per process (the soft limit, after raising it).
    open_files: int
    #: The accept queue a listener gets.
    listen_backlog: int
    #: Source ports per source address and target address:port.
    ephemeral_ports: int


def host_limits() -> HostLimits:
    """This machine's limits, with this process's file limit raised first (its children,
    the run's workers and targets, inherit it)."""
    return HostLimits(
        open_files=raise_open_files_limit(),
        listen_backlog=listen_backlog(),
        ephemeral_ports=ephemeral_port_count(),
    )
