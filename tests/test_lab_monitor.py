"""The target monitor: per-replica figures from admin ``/stats``, one series per replica name
across restarts, and the 100 ms accept buckets written once each."""

from __future__ import annotations

import time

from wirelab.lab.monitor import TargetMonitor
from wirelab.metrics.lineprotocol import encode, parse_line


def stats(*, active: int, accepted: int, resumes: int = 0, buckets=(), ready=True, draining=False):
    return {
        "ready": ready,
        "draining": draining,
        "targets": {
            "ws": {
                "active_connections": active,
                "accepted": accepted,
                "requests": {"a": accepted, "b": 1},
                "resumes": resumes,
                "replayed": 10 * resumes,
                "accepts": [list(bucket) for bucket in buckets],
            }
        },
    }


class Lab:
    """A replica list and canned /stats answers that a test changes between polls."""

    def __init__(self) -> None:
        self.replicas: list[dict] = []
        self.answers: dict[str, dict | None] = {}
        self.asked: list[tuple[str, int]] = []

    def add(self, name: str, pid: int) -> None:
        url = f"http://127.0.0.1/{pid}"
        self.replicas.append({"name": name, "protocol": "ws", "admin_url": url, "pid": pid})

    def fetch(self, url: str, after: int) -> dict | None:
        self.asked.append((url, after))
        return self.answers.get(url)


def figures(points, measurement="targets"):
    return {p.tags["replica"]: p.fields for p in points if p.measurement == measurement}


def test_a_replaced_replica_stays_one_series_with_its_processes_summed() -> None:
    lab = Lab()
    lab.add("ws-1", 100)
    monitor = TargetMonitor(lambda: lab.replicas, base_tags={"run_id": "r"}, fetch=lab.fetch)
    lab.answers["http://127.0.0.1/100"] = stats(active=40, accepted=40)
    first = figures(monitor.poll())["ws-1"]
    assert (first["active_connections"], first["accepted"], first["ready"]) == (40, 40, 1)

    # Surge: the new process (pid 200) is ready, the old one drains; same name.
    lab.add("ws-1", 200)
    lab.answers["http://127.0.0.1/100"] = stats(active=25, accepted=45, draining=True, ready=False)
    lab.answers["http://127.0.0.1/200"] = stats(active=20, accepted=20, resumes=20)
    during = figures(monitor.poll())["ws-1"]
    assert during["active_connections"] == 45
    assert during["accepted"] == 5 + 20  # deltas per process, the new one from zero
    assert (during["ready"], during["draining"]) == (1, 1)
    assert (during["resumes"], during["replayed"]) == (20, 200)
    assert during["requests"] == 5 + 21

    # The old process is gone: its counters leave with it, nothing goes negative.
    lab.replicas = [r for r in lab.replicas if r["pid"] != 100]
    lab.answers["http://127.0.0.1/200"] = stats(active=40, accepted=40, resumes=20)
    after = figures(monitor.poll())["ws-1"]
    assert (after["active_connections"], after["accepted"], after["draining"]) == (40, 20, 0)
    assert after["resumes"] == 0


def test_a_replica_that_does_not_answer_shows_as_not_ready_with_no_connections() -> None:
    lab = Lab()
    lab.add("ws-2", 300)
    monitor = TargetMonitor(lambda: lab.replicas, base_tags={}, fetch=lab.fetch)
    (point,) = monitor.poll()
    assert point.fields["ready"] == 0 and point.fields["active_connections"] == 0
    assert parse_line(encode(point)).fields == point.fields


def test_accept_buckets_are_written_once_half_a_second_late_and_asked_for_incrementally() -> None:
    lab = Lab()
    lab.add("ws-1", 100)
    lab.add("ws-1", 200)
    monitor = TargetMonitor(lambda: lab.replicas, base_tags={}, fetch=lab.fetch)
    old = 10  # a bucket long closed: written at once
    lab.answers["http://127.0.0.1/100"] = stats(active=1, accepted=3, buckets=[(old, 3)])
    lab.answers["http://127.0.0.1/200"] = stats(active=1, accepted=2, buckets=[(old, 2)])
    points = monitor.poll()
    accepts = [p for p in points if p.measurement == "target_accepts"]
    assert [(p.time_ns, p.fields["accepted"]) for p in accepts] == [(old * 100_000_000, 5)]
    lab.answers["http://127.0.0.1/100"] = stats(active=1, accepted=3)
    lab.answers["http://127.0.0.1/200"] = stats(active=1, accepted=2)
    monitor.poll()
    assert lab.asked[-2:] == [("http://127.0.0.1/100", old), ("http://127.0.0.1/200", old)]

    # A bucket closed just now waits for the other processes; the final poll flushes it.
    recent = time.time_ns() // 100_000_000 - 1
    lab.answers["http://127.0.0.1/100"] = stats(active=1, accepted=4, buckets=[(recent, 1)])
    assert not [p for p in monitor.poll() if p.measurement == "target_accepts"]
    lab.answers["http://127.0.0.1/100"] = stats(active=1, accepted=4)
    final = [p for p in monitor.poll(final=True) if p.measurement == "target_accepts"]
    assert [p.fields["accepted"] for p in final] == [1]
