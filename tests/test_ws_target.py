"""The WebSocket target, run as a real process and spoken to with websocket-client."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import websocket

from tests.fixtures.targets import RunningTarget, TargetFactory

TIMEOUT = 5.0
TOKEN = "s3cret"


# -- helpers -------------------------------------------------------------------------------


def connect(
    running: RunningTarget, *, subprotocols: list[str] | None = None, query: str = ""
) -> websocket.WebSocket:
    url = running.url("ws", "/ws") + (f"?{query}" if query else "")
    return websocket.create_connection(
        url, timeout=TIMEOUT, subprotocols=subprotocols or ["wirelab.v1"]
    )


def send(ws: websocket.WebSocket, message: dict[str, Any]) -> None:
    ws.send(json.dumps(message))


def recv(ws: websocket.WebSocket) -> dict[str, Any]:
    text = ws.recv()
    assert isinstance(text, str) and text, f"expected a JSON text frame, got {text!r}"
    return json.loads(text)


def recv_until(ws: websocket.WebSocket, kind: str, limit: int = 5000) -> dict[str, Any]:
    """Skip feed events until a message of ``kind`` arrives (bounded in count and time)."""
    deadline = time.monotonic() + TIMEOUT
    for _ in range(limit):
        message = recv(ws)
        if message["type"] == kind:
            return message
        assert time.monotonic() < deadline, f"no {kind!r} message within {TIMEOUT}s"
    pytest.fail(f"no {kind!r} message within {limit} messages")


def recv_events(ws: websocket.WebSocket, count: int) -> list[dict[str, Any]]:
    events = []
    for _ in range(count):
        message = recv(ws)
        assert message["type"] == "event", message
        events.append(message)
    return events


def close_of(ws: websocket.WebSocket, limit: int = 10_000) -> tuple[int, str]:
    """Read until the server's close frame; return its code and reason."""
    deadline = time.monotonic() + TIMEOUT
    for _ in range(limit):
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            # websocket-client has answered the close; the TCP connection is ours to end.
            ws.shutdown()
            return int.from_bytes(data[:2], "big"), data[2:].decode()
        assert time.monotonic() < deadline, "server did not close within the timeout"
    pytest.fail(f"no close frame within {limit} frames")


def echo(ws: websocket.WebSocket, message_id: int) -> dict[str, Any]:
    send(ws, {"type": "echo", "id": message_id, "ts": 1, "payload": "still here"})
    reply = recv(ws)
    assert reply["type"] == "echo" and reply["id"] == message_id
    return reply


def http_get(running: RunningTarget, path: str) -> tuple[int, dict[str, Any]]:
    url = f"http://{running.host}:{running.port('ws')}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def now_us() -> int:
    return time.time_ns() // 1000


def assert_contiguous(events: list[dict[str, Any]], first: int) -> None:
    assert [event["seq"] for event in events] == list(range(first, first + len(events)))


def env_with_token() -> dict[str, str]:
    return {**os.environ, "WIRELAB_TARGET_TOKEN": TOKEN}


# -- request/response ----------------------------------------------------------------------


def test_echo_round_trip_keeps_id_ts_and_payload_and_adds_server_ts(
    targets: TargetFactory,
) -> None:
    running = targets.start("ws", args=["--rate", "0"])
    ws = connect(running)
    assert ws.subprotocol == "wirelab.v1"
    payload = {"nested": [1, 2, 3], "text": "héllo"}
    before = now_us()
    send(ws, {"type": "echo", "id": "abc-1", "ts": 12345, "payload": payload})
    reply = recv(ws)
    assert reply["type"] == "echo"
    assert (reply["id"], reply["ts"], reply["payload"]) == ("abc-1", 12345, payload)
    assert before <= reply["server_ts"] <= now_us()
    # Answered in order: three requests, three replies with the same ids in the same order.
    for message_id in (7, 8, 9):
        send(ws, {"type": "echo", "id": message_id, "ts": message_id, "payload": None})
    assert [recv(ws)["id"] for _ in range(3)] == [7, 8, 9]
    ws.close()


def test_app_level_ping_is_answered_with_pong_carrying_id_and_ts(targets: TargetFactory) -> None:
    running = targets.start("ws", args=["--rate", "0"])
    ws = connect(running)
    send(ws, {"type": "ping", "id": 42, "ts": 777})
    reply = recv(ws)
    assert reply["type"] == "pong"
    assert (reply["id"], reply["ts"]) == (42, 777)
    assert isinstance(reply["server_ts"], int) and reply["server_ts"] > 0
    ws.close()


def test_unknown_type_gets_an_error_reply_and_the_connection_stays_open(
    targets: TargetFactory,
) -> None:
    running = targets.start("ws", args=["--rate", "0"])
    ws = connect(running)
    send(ws, {"type": "teleport"})
    reply = recv(ws)
    assert reply["type"] == "error" and reply["code"] == "unknown_type"
    send(ws, {"no": "type"})
    assert recv(ws)["code"] == "unknown_type"
    echo(ws, 1)
    ws.close()


# -- the feed ------------------------------------------------------------------------------


def test_subscribe_since_zero_replays_contiguous_seqs_from_one(targets: TargetFactory) -> None:
    running = targets.start("ws", args=["--rate", "200"])
    ws = connect(running)
    send(ws, {"type": "subscribe", "since": 0})
    subscribed = recv(ws)
    assert subscribed["type"] == "subscribed" and subscribed["since"] == 0
    assert subscribed["head"] >= 0
    events = []
    for _ in range(60):
        event = recv(ws)
        received = now_us()
        assert event["type"] == "event", event
        assert event["ts"] <= received
        assert isinstance(event["data"], str) and event["data"]
        events.append(event)
    assert_contiguous(events, 1)
    ws.close()


def test_live_only_subscribe_starts_right_after_the_head(targets: TargetFactory) -> None:
    running = targets.start("ws", args=["--rate", "200"])
    time.sleep(0.5)
    ws = connect(running)
    send(ws, {"type": "subscribe", "since": None})
    subscribed = recv(ws)
    assert subscribed["type"] == "subscribed"
    assert subscribed["head"] > 20, "the feed should have been publishing for 0.5 s"
    assert subscribed["since"] == subscribed["head"]
    events = recv_events(ws, 20)
    assert_contiguous(events, subscribed["head"] + 1)
    ws.close()


def test_subscribe_with_invalid_since_gets_invalid_since_error(targets: TargetFactory) -> None:
    running = targets.start("ws", args=["--rate", "0"])
    ws = connect(running)
    for since in (-1, "5", 1.5, True):
        send(ws, {"type": "subscribe", "since": since})
        reply = recv(ws)
        assert (reply["type"], reply["code"]) == ("error", "invalid_since"), since
    echo(ws, 1)
    ws.close()


def test_second_subscribe_replaces_the_first_and_unsubscribe_stops_the_stream(
    targets: TargetFactory,
) -> None:
    running = targets.start("ws", args=["--rate", "200"])
    ws = connect(running)
    send(ws, {"type": "subscribe", "since": 0})
    recv_until(ws, "subscribed")
    recv_events(ws, 5)
    send(ws, {"type": "subscribe", "since": 3})
    resubscribed = recv_until(ws, "subscribed")
    assert resubscribed["since"] == 3
    assert_contiguous(recv_events(ws, 10), 4)
    send(ws, {"type": "unsubscribe"})
    recv_until(ws, "unsubscribed")
    # Nothing follows but the reply to our own request.
    send(ws, {"type": "echo", "id": "after", "ts": 0, "payload": None})
    assert recv(ws)["id"] == "after"
    ws.close()


@pytest.mark.parametrize("payload_size", [10, 200, 70_000])
def test_events_of_every_frame_length_class_arrive_whole(
    targets: TargetFactory, payload_size: int
) -> None:
    # 7-bit, 16-bit and 64-bit payload lengths: the three ways a frame header says its size.
    running = targets.start("ws", args=["--rate", "50", "--payload-size", str(payload_size)])
    ws = connect(running)
    send(ws, {"type": "subscribe", "since": 0})
    recv_until(ws, "subscribed")
    events = recv_events(ws, 5)
    assert_contiguous(events, 1)
    assert all(len(event["data"]) == payload_size for event in events)
    ws.close()


def test_echo_is_answered_while_a_subscription_is_streaming(targets: TargetFactory) -> None:
    running = targets.start("ws", args=["--rate", "500"])
    ws = connect(running)
    send(ws, {"type": "subscribe", "since": 0})
    recv_until(ws, "subscribed")
    send(ws, {"type": "echo", "id": "mid-stream", "ts": 0, "payload": "x"})
    reply = recv_until(ws, "echo")
    assert reply["id"] == "mid-stream"
    ws.close()


def test_client_resumes_from_since_on_another_replica_without_gap_or_duplicate(
    targets: TargetFactory, redis_url: str
) -> None:
    replica_a = targets.start("ws", redis_url=redis_url, args=["--rate", "100"])
    replica_b = targets.start("ws", redis_url=redis_url, args=["--rate", "100"])
    ws = connect(replica_a)
    send(ws, {"type": "subscribe", "since": 0})
    recv_until(ws, "subscribed")
    first_part = recv_events(ws, 30)
    assert_contiguous(first_part, 1)
    resume_from = first_part[-1]["seq"]
    ws.close()

    ws = connect(replica_b)
    send(ws, {"type": "subscribe", "since": resume_from})
    subscribed = recv(ws)
    assert (subscribed["type"], subscribed["since"]) == ("subscribed", resume_from)
    second_part = recv_events(ws, 50)
    assert_contiguous(second_part, resume_from + 1)
    ws.close()


def test_resume_from_before_retention_gets_a_reset_then_events_from_first(
    targets: TargetFactory,
) -> None:
    running = targets.start("ws", args=["--retention", "20", "--rate", "200"])
    time.sleep(1.0)
    ws = connect(running)
    send(ws, {"type": "subscribe", "since": 1})
    assert recv(ws)["type"] == "subscribed"
    reset = recv(ws)
    assert reset["type"] == "reset", reset
    assert reset["since"] == 1
    assert reset["first"] > 2
    assert reset["lost"] == reset["first"] - 2
    assert_contiguous(recv_events(ws, 30), reset["first"])
    ws.close()


# -- bad input: only the offending connection goes ------------------------------------------


def test_oversized_message_closes_that_connection_with_1009(targets: TargetFactory) -> None:
    running = targets.start("ws", args=["--rate", "0", "--max-message-bytes", "1024"])
    bystander = connect(running)
    offender = connect(running)
    echo(offender, 0)  # a message under the limit is fine
    offender.send(json.dumps({"type": "echo", "id": 1, "ts": 0, "payload": "x" * 4096}))
    code, _ = close_of(offender)
    assert code == 1009
    echo(bystander, 1)
    echo(bystander, 2)
    bystander.close()


def test_text_that_is_not_json_closes_that_connection_with_1007(targets: TargetFactory) -> None:
    running = targets.start("ws", args=["--rate", "0"])
    bystander = connect(running)
    offender = connect(running)
    offender.send("this is not json")
    code, reason = close_of(offender)
    assert code == 1007 and reason
    echo(bystander, 1)

    offender = connect(running)
    offender.send("[1, 2, 3]")  # JSON, but not an object
    assert close_of(offender)[0] == 1007
    echo(bystander, 2)
    bystander.close()


def test_binary_frame_closes_that_connection_with_1003(targets: TargetFactory) -> None:
    running = targets.start("ws", args=["--rate", "0"])
    bystander = connect(running)
    offender = connect(running)
    offender.send_binary(b'{"type":"echo"}')
    assert close_of(offender)[0] == 1003
    echo(bystander, 1)
    bystander.close()


@pytest.mark.parametrize("query", ["token=abc", "access_token=abc", "x=1&api_key=abc"])
def test_token_in_query_string_is_refused_with_400(targets: TargetFactory, query: str) -> None:
    running = targets.start("ws", args=["--rate", "0"])
    bystander = connect(running)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(running, query=query)
    assert refused.value.status_code == 400
    body = json.loads(refused.value.resp_body)
    assert body["error"]["code"] == "credentials_in_url"
    assert "abc" not in running.log_text()
    echo(bystander, 1)
    bystander.close()


# -- auth ----------------------------------------------------------------------------------


def test_bearer_subprotocol_with_the_right_token_is_accepted(targets: TargetFactory) -> None:
    running = targets.start("ws", args=["--rate", "0"], env=env_with_token())
    ws = connect(running, subprotocols=["wirelab.v1", f"bearer.{TOKEN}"])
    assert ws.subprotocol == "wirelab.v1"
    echo(ws, 1)
    ws.close()


def test_query_string_token_is_refused_even_when_it_is_right(targets: TargetFactory) -> None:
    running = targets.start("ws", args=["--rate", "0"], env=env_with_token())
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(running, query=f"token={TOKEN}")
    assert refused.value.status_code == 400


def test_bearer_subprotocol_with_a_wrong_token_is_refused_with_401(
    targets: TargetFactory,
) -> None:
    running = targets.start("ws", args=["--rate", "0"], env=env_with_token())
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(running, subprotocols=["wirelab.v1", "bearer.wrong"])
    assert refused.value.status_code == 401
    assert json.loads(refused.value.resp_body)["error"]["code"] == "unauthorized"


def test_first_frame_auth_with_the_right_token_is_accepted(targets: TargetFactory) -> None:
    running = targets.start("ws", args=["--rate", "0"], env=env_with_token())
    ws = connect(running)
    send(ws, {"type": "auth", "token": TOKEN})
    assert recv(ws) == {"type": "authenticated"}
    echo(ws, 1)
    ws.close()


def test_first_frame_auth_with_a_wrong_or_no_token_closes_with_1008(
    targets: TargetFactory,
) -> None:
    running = targets.start("ws", args=["--rate", "0"], env=env_with_token())
    ws = connect(running)
    send(ws, {"type": "auth", "token": "wrong"})
    assert close_of(ws)[0] == 1008

    ws = connect(running)
    send(ws, {"type": "echo", "id": 1, "ts": 0, "payload": None})  # skipped auth
    assert close_of(ws)[0] == 1008
    assert TOKEN not in running.log_text()


# -- health and drain ----------------------------------------------------------------------


def test_healthz_and_readyz_answer_200_and_other_paths_404(targets: TargetFactory) -> None:
    running = targets.start("ws", args=["--rate", "0"])
    assert http_get(running, "/healthz") == (200, {"status": "ok", "protocol": "ws"})
    assert http_get(running, "/readyz") == (200, {"status": "ready"})
    status, body = http_get(running, "/elsewhere")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_sigterm_closes_subscribers_with_1001_and_a_jittered_hint_then_exits_0(
    targets: TargetFactory,
) -> None:
    grace = 3.0
    running = targets.start(
        "ws",
        args=["--rate", "50", "--grace", f"{grace}s", "--drain-delay", "1s", "--retry-ms", "500"],
    )
    subscriber = connect(running)
    send(subscriber, {"type": "subscribe", "since": 0})
    recv_until(subscriber, "subscribed")
    recv_events(subscriber, 3)
    # A client that never reads: it never answers the close, so the grace period must end it.
    straggler = connect(running)

    running.process.signal(signal.SIGTERM)
    # Readiness fails first, while the listener is still open for the drain delay.
    for _ in range(50):
        if http_get(running, "/readyz")[0] == 503:
            break
        time.sleep(0.02)
    else:
        pytest.fail("/readyz did not turn 503 after SIGTERM")

    code, reason = close_of(subscriber)
    assert code == 1001
    hint = json.loads(reason)["reconnect_after_ms"]
    assert 500 <= hint <= 500 + 2000  # --retry-ms plus the default 2000 ms of jitter

    # The listener is closed while the straggler is still being waited for.
    with pytest.raises(OSError):
        socket.create_connection((running.host, running.port("ws")), timeout=1).close()

    for _ in range(200):
        if not running.process.alive:
            break
        time.sleep(0.05)
    assert not running.process.alive, "target did not exit after the grace period"
    assert running.process.returncode == 0
    straggler.close()
