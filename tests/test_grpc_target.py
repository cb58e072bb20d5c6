"""The gRPC target, driven by real grpcio stubs (and the grpc.health.v1 client) against the
real process. The in-process tests run the target on uvloop, as the runner does, where its
counters can be read."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

from wirelab.targets.base import TargetSettings, drain_targets
from wirelab.targets.feed import MemoryFeed, now_us
from wirelab.targets.grpc_target import GrpcTarget
from wirelab.targets.proto import wirelab_pb2 as pb
from wirelab.targets.proto import wirelab_pb2_grpc as pb_grpc

SERVICE = "wirelab.v1.Lab"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@contextmanager
def lab(address: str) -> Iterator[pb_grpc.LabStub]:
    with grpc.insecure_channel(address) as channel:
        yield pb_grpc.LabStub(channel)


def health_status(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
    return reply.status


def take(call: Iterator[pb.FeedMessage], count: int, kind: str = "event") -> list[pb.FeedMessage]:
    """The next ``count`` messages of ``kind`` (others skipped); the call's deadline bounds it."""
    found = []
    for message in call:
        if message.WhichOneof("kind") == kind:
            found.append(message)
            if len(found) == count:
                break
    return found


def wait_exit(running, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while running.process.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    return running.process.returncode


def rpc_error(method, *args, **kwargs) -> grpc.RpcError:
    """The error a call fails with; a streaming call is read until it fails."""
    with pytest.raises(grpc.RpcError) as caught:
        result = method(*args, **kwargs)
        if isinstance(result, Iterator):
            for _ in result:
                pass
    return caught.value


# -- Echo --------------------------------------------------------------------------------


def test_echo_returns_the_request_with_the_server_time(targets) -> None:
    running = targets.start("grpc", args=["--rate", "0"])
    sent = now_us()
    with lab(running.url("grpc")) as stub:
        reply = stub.Echo(pb.EchoRequest(id="e-1", ts=sent, payload=b"\x00\xffabc"), timeout=5)
    assert (reply.id, reply.ts, reply.payload) == ("e-1", sent, b"\x00\xffabc")
    assert sent <= reply.server_ts <= now_us()


def test_echo_whose_delay_exceeds_the_deadline_fails_at_once_with_deadline_exceeded(
    targets,
) -> None:
    running = targets.start("grpc", args=["--rate", "0"])
    with lab(running.url("grpc")) as stub:
        stub.Echo(pb.EchoRequest(id="warm-up"), timeout=5)  # connected before timing
        error = rpc_error(stub.Echo, pb.EchoRequest(id="late", delay_ms=5000), timeout=3.0)
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The server's own verdict (its details), given before it slept: a client timer
        # running out would carry no such details.
        assert "delay_ms=5000" in error.details()
        # A delay within the deadline is served.
        assert stub.Echo(pb.EchoRequest(id="ok", delay_ms=100), timeout=5).id == "ok"


# -- Subscribe -----------------------------------------------------------------------------


def test_subscribe_since_zero_replays_contiguous_seqs_from_one_then_follows_live(targets) -> None:
    running = targets.start("grpc", args=["--rate", "200"])
    time.sleep(0.3)  # some events to replay, more to come live
    with lab(running.url("grpc")) as stub:
        call = stub.Subscribe(pb.SubscribeRequest(since=0), timeout=10)
        events = take(call, 200)
        call.cancel()
    assert [m.event.seq for m in events] == list(range(1, 201))
    assert all(m.event.data for m in events)
    assert events[-1].event.ts >= events[0].event.ts


def test_subscribe_without_since_starts_at_the_head(targets) -> None:
    running = targets.start("grpc", args=["--rate", "200"])
    with lab(running.url("grpc")) as stub:
        replay = stub.Subscribe(pb.SubscribeRequest(since=0), timeout=10)
        head_seen = take(replay, 100)[-1].event.seq
        replay.cancel()
        live = stub.Subscribe(pb.SubscribeRequest(), timeout=10)
        events = take(live, 20)
        live.cancel()
    seqs = [m.event.seq for m in events]
    assert seqs[0] > head_seen  # nothing replayed from the start
    assert seqs == list(range(seqs[0], seqs[0] + 20))
    assert now_us() - events[0].event.ts < 2_000_000  # fresh, not history


def test_subscribe_rejects_a_negative_since_with_invalid_argument(targets) -> None:
    running = targets.start("grpc", args=["--rate", "0"])
    with lab(running.url("grpc")) as stub:
        error = rpc_error(stub.Subscribe, pb.SubscribeRequest(since=-1), timeout=5)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_idle_subscribe_stream_gets_heartbeats(targets) -> None:
    running = targets.start("grpc", args=["--rate", "0", "--heartbeat", "200ms"])
    with lab(running.url("grpc")) as stub:
        call = stub.Subscribe(pb.SubscribeRequest(), timeout=5)
        beats = take(call, 3, kind="heartbeat")
        call.cancel()
    stamps = [m.heartbeat.server_ts for m in beats]
    assert len(stamps) == 3
    assert stamps == sorted(stamps)
    assert stamps[-1] - stamps[0] >= 300_000  # paced by the interval, not a burst


def test_subscribe_resumes_on_another_replica_sharing_redis(targets, redis_url) -> None:
    a = targets.start("grpc", redis_url=redis_url, args=["--rate", "200"])
    b = targets.start("grpc", redis_url=redis_url, args=["--rate", "200"])
    with lab(a.url("grpc")) as stub_a:
        call = stub_a.Subscribe(pb.SubscribeRequest(since=0), timeout=10)
        first = [m.event.seq for m in take(call, 30)]
        call.cancel()
    last = first[-1]
    with lab(b.url("grpc")) as stub_b:
        call = stub_b.Subscribe(pb.SubscribeRequest(since=last), timeout=10)
        messages = take(call, 50)
        call.cancel()
    resumed = [m.event.seq for m in messages]
    assert first == list(range(1, 31))
    assert resumed == list(range(last + 1, last + 51))  # no gap, no duplicate
    assert len(set(first + resumed)) == len(first) + len(resumed)


def test_subscribe_from_before_retention_starts_with_an_explicit_reset(targets) -> None:
    running = targets.start("grpc", args=["--rate", "200", "--retention", "20"])
    time.sleep(1.0)
    with lab(running.url("grpc")) as stub:
        call = stub.Subscribe(pb.SubscribeRequest(since=1), timeout=10)
        first_two = [next(call), next(call)]
        call.cancel()
    reset, event = first_two
    assert reset.WhichOneof("kind") == "reset"
    assert reset.reset.since == 1
    assert reset.reset.first > 2
    assert reset.reset.lost == reset.reset.first - 2
    assert event.WhichOneof("kind") == "event"
    assert event.event.seq == reset.reset.first


# -- Chat ----------------------------------------------------------------------------------


def test_chat_answers_each_message_in_order(targets) -> None:
    running = targets.start("grpc", args=["--rate", "0"])
    sent = [pb.ChatMessage(id=f"m{i}", ts=now_us(), text=f"hello {i}") for i in range(50)]
    with lab(running.url("grpc")) as stub:
        answers = list(stub.Chat(iter(sent), timeout=10))
    assert [(a.id, a.ts, a.text) for a in answers] == [(m.id, m.ts, m.text) for m in sent]
    assert all(a.server_ts >= m.ts for a, m in zip(answers, sent, strict=True))


def test_chat_answers_each_message_before_the_next_is_sent(targets) -> None:
    running = targets.start("grpc", args=["--rate", "0"])
    outbox: queue.Queue[pb.ChatMessage | None] = queue.Queue()
    with lab(running.url("grpc")) as stub:
        call = stub.Chat(iter(outbox.get, None), timeout=10)
        for i in range(5):
            outbox.put(pb.ChatMessage(id=f"r{i}"))
            assert next(call).id == f"r{i}"  # a true round trip, not a batch at the end
        outbox.put(None)
        assert list(call) == []


# -- bad input -----------------------------------------------------------------------------


def test_oversized_message_fails_alone_while_other_calls_succeed(targets) -> None:
    running = targets.start("grpc", args=["--rate", "0", "--max-message-bytes", "1024"])
    address = running.url("grpc")
    with lab(address) as stub, lab(address) as control:
        assert control.Echo(pb.EchoRequest(id="before"), timeout=5).id == "before"
        error = rpc_error(stub.Echo, pb.EchoRequest(id="big", payload=b"x" * 4096), timeout=5)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The same connection and a second client both carry on.
        assert stub.Echo(pb.EchoRequest(id="small", payload=b"x" * 512), timeout=5).id == "small"
        assert control.Echo(pb.EchoRequest(id="after"), timeout=5).id == "after"


def _closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Read until the server closes the connection (EOF or reset) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", os.urandom(4096)],
    ids=["http1-request", "random-bytes"],
)
def test_garbage_bytes_get_their_socket_closed_and_others_are_served(targets, garbage) -> None:
    running = targets.start("grpc", args=["--rate", "0"])
    address = running.url("grpc")
    with lab(address) as control:
        assert control.Echo(pb.EchoRequest(id="before"), timeout=5).id == "before"
        with socket.create_connection(("127.0.0.1", running.port("grpc")), timeout=5) as raw:
            try:
                raw.sendall(garbage)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed even before we finished writing: also a pass
            else:
                assert _closed_by_peer(raw, timeout=5)
        assert control.Echo(pb.EchoRequest(id="after"), timeout=5).id == "after"
    assert running.process.alive


# -- auth ----------------------------------------------------------------------------------


def test_token_is_required_on_lab_methods_but_not_on_health(targets) -> None:
    token = "s3cret-token-for-grpc"
    env = {**os.environ, "WIRELAB_TARGET_TOKEN": token}
    running = targets.start("grpc", args=["--rate", "50"], env=env)
    address = running.url("grpc")
    good = (("authorization", f"Bearer {token}"),)
    wrong = (("authorization", "Bearer nope"),)
    with lab(address) as stub:
        for metadata in (None, wrong, (("authorization", token),)):
            error = rpc_error(stub.Echo, pb.EchoRequest(id="x"), metadata=metadata, timeout=5)
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        error = rpc_error(stub.Subscribe, pb.SubscribeRequest(since=0), timeout=5)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        error = rpc_error(stub.Chat, iter([pb.ChatMessage(id="c")]), metadata=wrong, timeout=5)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED

        assert stub.Echo(pb.EchoRequest(id="x"), metadata=good, timeout=5).id == "x"
        call = stub.Subscribe(pb.SubscribeRequest(since=0), metadata=good, timeout=5)
        assert take(call, 1)[0].event.seq == 1
        call.cancel()
        answers = stub.Chat(iter([pb.ChatMessage(id="c")]), metadata=good, timeout=5)
        assert [a.id for a in answers] == ["c"]
    assert health_status(address) == SERVING
    assert health_status(address, SERVICE) == SERVING
    assert token not in running.log_text()


# -- draining ------------------------------------------------------------------------------


def test_sigterm_finishes_unary_calls_and_sends_streams_away(targets) -> None:
    running = targets.start("grpc", args=["--rate", "100", "--grace", "5s", "--retry-ms", "700"])
    outbox: queue.Queue[pb.ChatMessage | None] = queue.Queue()
    with lab(running.url("grpc")) as stub:
        echo = stub.Echo.future(pb.EchoRequest(id="in-flight", delay_ms=1500), timeout=10)
        feed = stub.Subscribe(pb.SubscribeRequest(since=0), timeout=10)
        assert take(feed, 5)[-1].event.seq == 5
        outbox.put(pb.ChatMessage(id="hello"))
        chat = stub.Chat(iter(outbox.get, None), timeout=10)
        assert next(chat).id == "hello"
        time.sleep(0.3)  # the Echo is being served

        running.process.signal(signal.SIGTERM)

        kinds = []
        with pytest.raises(grpc.RpcError) as ended:
            for message in feed:
                kinds.append(message.WhichOneof("kind"))
                if kinds[-1] == "goaway":
                    goaway = message.goaway
        assert kinds and kinds[-1] == "goaway"  # the last word before the status
        assert goaway.reason == "draining"
        assert 700 <= goaway.reconnect_after_ms <= 700 + 2000
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE

        with pytest.raises(grpc.RpcError) as chat_ended:
            next(chat)
        assert chat_ended.value.code() == grpc.StatusCode.UNAVAILABLE
        outbox.put(None)

        assert echo.result(timeout=5).id == "in-flight"
    assert wait_exit(running, timeout=10) == 0
    # The streams were sent away and the Echo finished within grace, not cut off when it ran out.
    assert running.stops_clean() == [True]


def test_health_reports_not_serving_while_draining(targets) -> None:
    running = targets.start("grpc", args=["--rate", "0", "--drain-delay", "2s", "--grace", "5s"])
    address = running.url("grpc")
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=SERVICE)
        assert health.Check(request, timeout=2).status == SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watch).status == SERVING

        running.process.signal(signal.SIGTERM)
        # Watchers hear it at once; fresh probes see it too, within the drain delay.
        assert next(watch).status == NOT_SERVING
        watch.cancel()
        assert health.Check(request, timeout=2).status == NOT_SERVING
        assert health_status(address) == NOT_SERVING
        # A load balancer may still send work during the drain delay: it is served.
        echo = pb_grpc.LabStub(channel).Echo(pb.EchoRequest(id="late"), timeout=2)
        assert echo.id == "late"
        assert running.process.alive
    assert wait_exit(running, timeout=6) == 0


# -- in process, on uvloop (as the runner runs it) ------------------------------------------


def run_in_process(scenario, **settings) -> None:
    """Run ``scenario(target, feed)`` on uvloop against an in-process target, always stopped."""

    async def main() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        feed = MemoryFeed(retention=100)
        target = GrpcTarget(feed, TargetSettings(port=0, grace=3.0, **settings))
        await target.start()
        target.started = True
        try:
            await scenario(target, feed)
        finally:
            # Whatever happened, the server goes before the loop does.
            await target.stop_accepting()
            await target.wait_closed(0)

    uvloop.run(main())


async def wait_until(predicate, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def test_in_process_target_counts_calls_streams_and_replays_and_drains() -> None:
    async def scenario(target: GrpcTarget, feed: MemoryFeed) -> None:
        for i in range(10):
            await feed.append(f"event {i}")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{target.port}") as channel:
            stub = pb_grpc.LabStub(channel)
            reply = await stub.Echo(pb.EchoRequest(id="u", delay_ms=10), timeout=5)
            assert reply.id == "u"
            stream = stub.Subscribe(pb.SubscribeRequest(since=4), timeout=10)
            replayed = [(await stream.read()).event.seq for _ in range(6)]
            assert replayed == [5, 6, 7, 8, 9, 10]
            await feed.append("live")
            assert (await stream.read()).event.seq == 11
            assert target.active_streams == 1
            assert (target.accepted_calls, target.resumes, target.replayed) == (2, 1, 6)

            assert await drain_targets([target], target.settings)  # clean within grace
            assert (await stream.read()).WhichOneof("kind") == "goaway"
            assert await stream.code() == grpc.StatusCode.UNAVAILABLE
        assert target.active_streams == 0

    run_in_process(scenario)


def test_cancelled_echo_stops_its_work() -> None:
    async def scenario(target: GrpcTarget, feed: MemoryFeed) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{target.port}") as channel:
            stub = pb_grpc.LabStub(channel)
            call = stub.Echo(pb.EchoRequest(id="slow", delay_ms=8000), timeout=30)
            assert await wait_until(lambda: target.active_calls == 1, timeout=2)
            call.cancel()
            assert await wait_until(lambda: target.active_calls == 0, timeout=1)
            with pytest.raises(asyncio.CancelledError):
                await call

    run_in_process(scenario)


# -- generated code ------------------------------------------------------------------------


def test_generated_code_matches_the_proto() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wirelab.targets.proto.generate", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
