"""The target monitor: server-side figures of every replica, on the run's timeline.

Clients see their own connections; only the servers see how the load lands: how many
connections each replica holds, how fast it accepts new ones during a storm, how many
clients resumed and how many events it replayed from the log. Every interval the monitor
(a greenlet in the Locust master) asks where the replicas are (``source``: the local lab's
control API, or on Kubernetes the pod list) and polls each one's admin ``/stats``. It writes:

- ``targets``: one point per replica name per interval (see
  :mod:`wirelab.metrics.lineprotocol` for the fields). While a replica is being replaced,
  its old and new process share the name: their figures are summed (ready and draining are
  1 when either process is), so the series of ``ws-1`` stays one line across a deploy.
- ``target_accepts``: the replicas' own 100 ms accept buckets, half a second late so that
  every process of a name has reported a bucket before it is written.

Counters are turned into per-interval deltas per process (keyed by pid), so a restarted
process starting again from zero never shows as a negative rate.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..metrics.lineprotocol import Point, target_accepts_point, targets_point

log = logging.getLogger(__name__)

#: Accept buckets are written this many buckets (of 100 ms) after they closed.
_BUCKET_DELAY = 5
BUCKET_NS = 100_000_000


@dataclass
class _Process:
    """What the monitor remembers about one replica process between polls."""

    counters: dict[str, int] = field(default_factory=dict)
    last_bucket: int = 0


def _count(value: Any) -> int:
    """A counter from ``/stats``: a number, or a dict of numbers per route/method."""
    if isinstance(value, dict):
        return sum(int(v) for v in value.values() if isinstance(v, int | float))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return 0


def fetch_stats(
    admin_url: str, after: int, token: str | None, timeout: float = 2.0
) -> dict[str, Any] | None:
    """One replica's admin ``/stats`` (``None`` if it does not answer: starting, or gone)."""
    request = urllib.request.Request(f"{admin_url}/stats?after={after}")  # noqa: S310 - loopback
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


class TargetMonitor:
    """Polls every replica's admin ``/stats``; :meth:`poll` returns the interval's points.

    ``source()`` lists the replica processes now: dicts with ``name``, ``protocol``,
    ``admin_url`` and ``pid``. ``fetch(admin_url, after)`` reads one (overridable for tests).
    """

    def __init__(
        self,
        source: Callable[[], list[dict[str, Any]]],
        *,
        base_tags: dict[str, str],
        token: str | None = None,
        fetch: Callable[[str, int], dict[str, Any] | None] | None = None,
    ) -> None:
        self.source = source
        self.base_tags = base_tags
        self.fetch = fetch or (lambda url, after: fetch_stats(url, after, token))
        self._processes: dict[tuple[str, int], _Process] = {}
        self._pending: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        self._last_poll: float | None = None
        #: Per replica name: the last figures written (for tests and the report).
        self.latest: dict[str, dict[str, Any]] = {}

    def poll(self, *, final: bool = False) -> list[Point]:
        """Read every replica once; the ``targets`` and ``target_accepts`` points."""
        now = time.monotonic()
        elapsed = (now - self._last_poll) if self._last_poll is not None else None
        self._last_poll = now
        now_ns = time.time_ns()
        try:
            replicas = self.source()
        except Exception as exc:  # the lab may be shutting down at the very end
            log.warning("target monitor: cannot list replicas: %s", exc)
            return self._accept_points(now_ns, final=final)
        by_name: dict[tuple[str, str], dict[str, Any]] = {}
        seen: set[tuple[str, int]] = set()
        for replica in replicas:
            name, protocol = replica["name"], replica["protocol"]
            figures = by_name.setdefault(
                (protocol, name),
                {
                    "active_connections": 0, "accepted": 0, "requests": 0, "resumes": 0,
                    "replayed": 0, "draining": 0, "ready": 0,
                },
            )  # fmt: skip
            pid = replica.get("pid")
            if not pid:
                continue
            key = (name, int(pid))
            seen.add(key)
            process = self._processes.setdefault(key, _Process())
            stats = self.fetch(replica["admin_url"], process.last_bucket)
            if stats is None:
                continue
            target = (stats.get("targets") or {}).get(protocol) or {}
            figures["active_connections"] += _count(target.get("active_connections"))
            figures["ready"] = max(figures["ready"], int(bool(stats.get("ready"))))
            figures["draining"] = max(figures["draining"], int(bool(stats.get("draining"))))
            for field_name, stat in (
                ("accepted", "accepted"),
                ("requests", "requests"),
                ("resumes", "resumes"),
                ("replayed", "replayed"),
            ):
                total = _count(target.get(stat))
                figures[field_name] += max(0, total - process.counters.get(field_name, 0))
                process.counters[field_name] = total
            pending = self._pending[(protocol, name)]
            for bucket, count in target.get("accepts") or ():
                pending[bucket] = pending.get(bucket, 0) + int(count)
                process.last_bucket = max(process.last_bucket, int(bucket))
        for key in list(self._processes):
            if key not in seen:
                del self._processes[key]
        points = []
        for (protocol, name), figures in by_name.items():
            figures["accept_rate"] = (
                round(figures["accepted"] / elapsed, 3) if elapsed and elapsed > 0 else 0.0
            )
            self.latest[name] = {"protocol": protocol, **figures}
            points.append(targets_point(protocol, name, figures, self.base_tags, now_ns))
        return points + self._accept_points(now_ns, final=final)

    def _accept_points(self, now_ns: int, *, final: bool) -> list[Point]:
        cutoff = now_ns // BUCKET_NS - _BUCKET_DELAY
        points = []
        for (protocol, name), pending in self._pending.items():
            for bucket in sorted(pending):
                if final or bucket < cutoff:
                    points.append(
                        target_accepts_point(
                            protocol, name, pending.pop(bucket), self.base_tags, bucket * BUCKET_NS
                        )
                    )
        return points
