"""Recorder deltas and the master's Aggregate: merging workers equals one process seeing all."""

from __future__ import annotations

import random

from wirelab.metrics.recorder import Aggregate, Recorder
from wirelab.metrics.series import RequestSeries, StreamSeries


def _events(seed: int, n: int) -> list[tuple]:
    rng = random.Random(seed)
    names = [("rest", "rest GET /items"), ("ws", "ws echo"), ("grpc", "grpc Echo")]
    events = []
    for _ in range(n):
        protocol, name = rng.choice(names)
        ok = rng.random() > 0.1
        events.append(
            (
                protocol,
                name,
                rng.lognormvariate(-5, 1),
                ok,
                rng.randint(0, 500),
                rng.uniform(0.0001, 0.01),
                None if ok else rng.choice(["TimeoutError", "ConnectionResetError"]),
            )
        )
    return events


def _record(recorder: Recorder, event: tuple) -> None:
    protocol, name, latency, ok, size, service, error = event
    recorder.request(protocol, name, latency, ok=ok, size=size, service_s=service, error=error)
    stream = recorder.stream("sse", "sse deliver")
    stream.record_event("ok" if ok else "gap", latency * 1e6)
    if not ok:
        stream.reconnects += 1
        stream.reconnect_time.record(latency * 2e6)


def test_deltas_of_two_workers_merge_to_the_totals_of_one_recorder_that_saw_everything():
    events = _events(1, 3000)
    single = Recorder()
    workers = {"w1": Recorder(), "w2": Recorder()}
    aggregate = Aggregate()
    for i, event in enumerate(events):
        _record(single, event)
        worker = "w1" if i % 3 else "w2"
        _record(workers[worker], event)
        if i % 250 == 0:  # report at uneven moments, several times per worker
            aggregate.add(worker, workers[worker].take_delta())
    for worker, recorder in workers.items():
        aggregate.add(worker, recorder.take_delta())

    whole = single.take_delta()
    expected_requests = {(r["p"], r["n"]): r for r in whole["requests"]}
    assert set(aggregate.requests) == set(expected_requests)
    for key, series in aggregate.requests.items():
        expected = RequestSeries.from_wire(expected_requests[key])
        assert (series.count, series.failures, series.bytes) == (
            expected.count,
            expected.failures,
            expected.bytes,
        )
        assert series.errors == expected.errors
        assert series.latency.buckets == expected.latency.buckets
        assert series.service.buckets == expected.service.buckets
    [expected_stream] = [StreamSeries.from_wire(s) for s in whole["streams"]]
    stream = aggregate.streams[("sse", "sse deliver")]
    assert (stream.delivered, stream.gaps, stream.reconnects) == (
        expected_stream.delivered,
        expected_stream.gaps,
        expected_stream.reconnects,
    )
    assert stream.lag.buckets == expected_stream.lag.buckets
    assert stream.reconnect_time.buckets == expected_stream.reconnect_time.buckets
    assert aggregate.workers == {"w1", "w2"}


def test_interval_figures_add_up_to_the_totals():
    aggregate = Aggregate()
    recorder = Recorder()
    interval_counts = 0
    for chunk in range(4):
        for event in _events(chunk, 100):
            _record(recorder, event)
        aggregate.add("w1", recorder.take_delta())
        requests, _ = aggregate.take_interval()
        interval_counts += sum(series.count for series in requests.values())
    assert interval_counts == sum(series.count for series in aggregate.requests.values()) == 400
    assert aggregate.take_interval() == ({}, {})


def test_take_delta_restarts_counters_but_keeps_the_connected_gauge():
    recorder = Recorder()
    recorder.request("ws", "ws echo", 0.002)
    stream = recorder.stream("ws", "ws feed")
    stream.connected = 3
    stream.delivered = 10
    recorder.dropped("rest", "rest GET /items", 2)
    first = recorder.take_delta()
    assert {r["n"]: (r["count"], r["dropped"]) for r in first["requests"]} == {
        "ws echo": (1, 0),
        "rest GET /items": (0, 2),
    }
    second = recorder.take_delta()
    assert second["requests"] == []
    [gauge_only] = second["streams"]
    assert gauge_only["connected"] == 3 and gauge_only["delivered"] == 0
    assert recorder.connections() == 3
    assert recorder.stream("ws", "ws feed") is stream  # users may keep their series object


def test_connected_gauge_sums_across_workers_and_drops_a_forgotten_worker():
    aggregate = Aggregate()
    for worker, connected in (("w1", 40), ("w2", 60)):
        recorder = Recorder()
        recorder.stream("sse", "sse feed").connected = connected
        recorder.stream("sse", "sse feed").delivered = 5
        aggregate.add(worker, {**recorder.take_delta(), "health": {"cpu_percent": 1.0}})
    _, streams = aggregate.take_interval()
    assert streams[("sse", "sse feed")].connected == 100
    assert aggregate.connected_now(("sse", "sse feed")) == 100
    assert set(aggregate.take_health()) == {"w1", "w2"}

    aggregate.forget_worker("w2")
    recorder = Recorder()
    recorder.stream("sse", "sse feed").connected = 41
    aggregate.add("w1", recorder.take_delta())
    _, streams = aggregate.take_interval()
    assert streams[("sse", "sse feed")].connected == 41
    # The forgotten worker's counts stay in the run's totals; its gauge does not.
    assert aggregate.streams[("sse", "sse feed")].delivered == 10
    assert aggregate.connected_peak[("sse", "sse feed")] == 100
    assert aggregate.take_health() == {}
