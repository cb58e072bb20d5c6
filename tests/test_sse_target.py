"""The SSE target, read by a raw event-stream parser over an httpx streaming response."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx


@dataclass
class SseMessage:
    """One dispatched message, or a comment (``comment`` set, the rest empty)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comment: str | None = None
    fields: list[str] = field(default_factory=list)


def parse_sse(lines: Iterator[str]) -> Iterator[SseMessage]:
    """The WHATWG event-stream rules, written out here independently of the project."""
    current = SseMessage()
    data_lines: list[str] = []
    for line in lines:
        if line == "":
            if data_lines or current.fields:
                current.data = "\n".join(data_lines)
                yield current
            current, data_lines = SseMessage(), []
            continue
        if line.startswith(":"):
            yield SseMessage(comment=line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        current.fields.append(name)
        if name == "data":
            data_lines.append(value)
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value
        elif name == "retry" and value.isdigit():
            current.retry = int(value)


def read_messages(
    url: str, *, headers: dict[str, str] | None = None, count: int, timeout: float = 10.0
) -> tuple[httpx.Response, list[SseMessage]]:
    """Open a stream and read ``count`` messages (comments included) or until it ends."""
    messages: list[SseMessage] = []
    deadline = time.monotonic() + timeout
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        if response.status_code != 200:
            response.read()
            return response, messages
        for message in parse_sse(response.iter_lines()):
            messages.append(message)
            if len(messages) >= count or time.monotonic() > deadline:
                break
    return response, messages


def events_of(messages: list[SseMessage]) -> list[dict]:
    return [json.loads(m.data) for m in messages if m.event == "message" and "data" in m.fields]


def test_stream_headers_retry_hint_and_ids_equal_seq(targets) -> None:
    sse = targets.start("sse", args=["--rate", "200", "--retry-ms", "1500"])
    response, messages = read_messages(sse.url("sse", "/stream?since=0"), count=21)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert messages[0].retry == 1500
    events = events_of(messages)
    assert [event["seq"] for event in events] == list(range(1, 21))
    assert [m.id for m in messages[1:]] == [str(seq) for seq in range(1, 21)]
    now_us = time.time_ns() // 1000
    assert all(event["ts"] <= now_us for event in events)


def test_last_event_id_resumes_on_another_replica_without_gap_or_duplicate(
    targets, redis_url
) -> None:
    args = ["--rate", "100"]
    replica_a = targets.start("sse", redis_url=redis_url, args=args)
    replica_b = targets.start("sse", redis_url=redis_url, args=args)
    _, first = read_messages(replica_a.url("sse", "/stream?since=0"), count=31)
    seen = events_of(first)
    last_id = first[-1].id
    assert last_id == str(seen[-1]["seq"])
    _, second = read_messages(
        replica_b.url("sse", "/stream"), headers={"Last-Event-ID": last_id}, count=51
    )
    resumed = [event["seq"] for event in events_of(second)]
    assert resumed == list(range(int(last_id) + 1, int(last_id) + 51))


def test_resume_past_retention_is_an_explicit_reset_event(targets) -> None:
    sse = targets.start("sse", args=["--rate", "200", "--retention", "20"])
    time.sleep(0.5)
    _, messages = read_messages(sse.url("sse", "/stream"), headers={"Last-Event-ID": "1"}, count=5)
    reset = messages[1]
    assert reset.event == "reset"
    body = json.loads(reset.data)
    assert body["since"] == 1
    assert body["first"] > 2
    assert body["lost"] == body["first"] - 2
    assert reset.id == str(body["first"] - 1)
    assert events_of(messages)[0]["seq"] == body["first"]


def test_idle_stream_sends_heartbeat_comments(targets) -> None:
    sse = targets.start("sse", args=["--rate", "0", "--heartbeat", "0.2s"])
    _, messages = read_messages(sse.url("sse", "/stream"), count=4, timeout=5)
    assert [m.comment for m in messages[1:4]] == ["heartbeat"] * 3


def test_malformed_last_event_id_is_a_400(targets) -> None:
    sse = targets.start("sse")
    response, _ = read_messages(
        sse.url("sse", "/stream"), headers={"Last-Event-ID": "abc"}, count=1
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_last_event_id"
    ok, messages = read_messages(sse.url("sse", "/stream"), count=1)
    assert ok.status_code == 200
    assert messages[0].retry is not None


def test_sigterm_sends_goaway_with_jittered_retry_then_ends_the_stream(targets) -> None:
    sse = targets.start(
        "sse", args=["--rate", "20", "--retry-ms", "1000", "--grace", "5s", "--heartbeat", "1s"]
    )
    messages: list[SseMessage] = []
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", sse.url("sse", "/stream")) as response,
    ):
        started = None
        for message in parse_sse(response.iter_lines()):
            messages.append(message)
            if started is None and len(messages) >= 3:
                started = time.monotonic()
                sse.process.signal(signal.SIGTERM)
            if len(messages) > 500:
                break
        # The loop ends because the server closed the stream, not by the bound above.
        assert len(messages) <= 500
    goaway = messages[-1]
    assert goaway.event == "goaway"
    body = json.loads(goaway.data)
    assert 1000 <= goaway.retry <= 3000
    assert body["reconnect_after_ms"] == goaway.retry
    assert sse.wait_exit(10) == 0
    assert time.monotonic() - started < 5
