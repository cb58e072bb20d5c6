"""A short built-in client that exercises every target once over real sockets.

Not a load generator (that is Locust's job): one thread per protocol does request/response
round trips and reads the feed for a few seconds, checking every event, so ``make demo``
can show each target answering and the feed arriving whole.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from .sequence import SequenceChecker


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class ProtocolResult:
    """What one protocol's smoke thread saw."""

    protocol: str
    requests: int = 0
    failures: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    feed: SequenceChecker = field(default_factory=SequenceChecker)
    error: str | None = None

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def to_dict(self) -> dict[str, object]:
        lags = sorted(self.feed.lags_us)
        return {
            "protocol": self.protocol,
            "requests": self.requests,
            "failures": self.failures,
            "p50_ms": self.percentile(0.50),
            "p99_ms": self.percentile(0.99),
            "events": self.feed.delivered,
            "gaps": self.feed.gaps,
            "missing": self.feed.missing,
            "duplicates": self.feed.duplicates,
            "out_of_order": self.feed.out_of_order,
            "lag_p50_ms": lags[len(lags) // 2] / 1000 if lags else None,
            "error": self.error,
        }

    def timed(self, call: Callable[[], bool]) -> None:
        started = time.perf_counter()
        try:
            ok = call()
        except Exception as exc:  # a smoke client reports failures, it does not stop on them
            ok = False
            self.error = f"{type(exc).__name__}: {exc}"
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.requests += 1
        if not ok:
            self.failures += 1


def smoke_rest(host: str, port: int, duration: float) -> ProtocolResult:
    """CRUD round trips with ETag/If-Match and Idempotency-Key, then a delta poll."""
    result = ProtocolResult("rest")
    connection = http.client.HTTPConnection(host, port, timeout=5)
    headers = {"Content-Type": "application/json"}

    def crud() -> bool:
        body = json.dumps({"name": "smoke"})
        key = {"Idempotency-Key": uuid.uuid4().hex}
        connection.request("POST", "/items", body, {**headers, **key})
        created = connection.getresponse()
        item = json.loads(created.read())
        etag = created.getheader("ETag")
        connection.request(
            "PUT", f"/items/{item['id']}", json.dumps({"name": "x"}), {**headers, "If-Match": etag}
        )
        updated = connection.getresponse()
        updated.read()
        connection.request(
            "DELETE", f"/items/{item['id']}", headers={"If-Match": updated.getheader("ETag")}
        )
        deleted = connection.getresponse()
        deleted.read()
        return (created.status, updated.status, deleted.status) == (201, 200, 204)

    deadline = time.monotonic() + duration
    cursor = None
    while time.monotonic() < deadline:
        result.timed(crud)
        path = "/events" if cursor is None else f"/events?since={cursor}&limit=1000"
        connection.request("GET", path)
        page = json.loads(connection.getresponse().read())
        received = _now_us()
        if cursor is not None:
            if page["reset"]:
                result.feed.reset(page["reset"]["since"], page["reset"]["first"])
            for event in page["events"]:
                result.feed.observe(event["seq"], event["ts"], received)
        cursor = page["cursor"]
        time.sleep(0.05)
    connection.close()
    return result


def smoke_sse(host: str, port: int, duration: float) -> ProtocolResult:
    """Read the event stream live for ``duration`` seconds."""
    result = ProtocolResult("sse")
    connection = http.client.HTTPConnection(host, port, timeout=duration + 5)
    started = time.perf_counter()
    connection.request("GET", "/stream", headers={"Accept": "text/event-stream"})
    response = connection.getresponse()
    result.latencies_ms.append((time.perf_counter() - started) * 1000)
    result.requests = 1
    if response.status != 200:
        result.failures = 1
        return result
    deadline = time.monotonic() + duration
    data: list[str] = []
    event_type = "message"
    while time.monotonic() < deadline:
        line = response.readline()
        if not line:
            break
        text = line.decode().rstrip("\r\n")
        if text.startswith("data:"):
            data.append(text[5:].strip())
        elif text.startswith("event:"):
            event_type = text[6:].strip()
        elif text == "" and data:
            message = json.loads("\n".join(data))
            if event_type == "message":
                result.feed.observe(message["seq"], message["ts"], _now_us())
            elif event_type == "reset":
                result.feed.reset(message["since"], message["first"])
            data, event_type = [], "message"
    connection.close()
    return result


def smoke_ws(host: str, port: int, duration: float) -> ProtocolResult:
    """Echo round trips and a live feed subscription on one WebSocket."""
    import websocket  # noqa: PLC0415 - websocket-client

    result = ProtocolResult("ws")
    ws = websocket.create_connection(f"ws://{host}:{port}/ws", timeout=5)
    ws.send(json.dumps({"type": "subscribe", "since": None}))
    deadline = time.monotonic() + duration
    next_echo = 0.0
    pending: dict[int, float] = {}
    counter = 0
    ws.settimeout(0.2)
    while time.monotonic() < deadline:
        if time.monotonic() >= next_echo:
            counter += 1
            pending[counter] = time.perf_counter()
            ws.send(json.dumps({"type": "echo", "id": counter, "ts": _now_us(), "payload": "x"}))
            next_echo = time.monotonic() + 0.05
        try:
            message = json.loads(ws.recv())
        except websocket.WebSocketTimeoutException:
            continue
        kind = message.get("type")
        if kind == "echo":
            sent = pending.pop(message["id"], None)
            result.requests += 1
            if sent is None:
                result.failures += 1
            else:
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
        elif kind == "event":
            result.feed.observe(message["seq"], message["ts"], _now_us())
        elif kind == "reset":
            result.feed.reset(message["since"], message["first"])
    result.failures += len(pending)
    ws.close()
    return result


def smoke_grpc(host: str, port: int, duration: float) -> ProtocolResult:
    """Unary Echo with a deadline, and a server-streaming Subscribe read in a thread."""
    import grpc  # noqa: PLC0415

    from .targets.proto import wirelab_pb2, wirelab_pb2_grpc  # noqa: PLC0415

    result = ProtocolResult("grpc")
    channel = grpc.insecure_channel(f"{host}:{port}")
    stub = wirelab_pb2_grpc.LabStub(channel)
    stream = stub.Subscribe(wirelab_pb2.SubscribeRequest(), timeout=duration + 5)

    def read_stream() -> None:
        try:
            for message in stream:
                kind = message.WhichOneof("kind")
                if kind == "event":
                    result.feed.observe(message.event.seq, message.event.ts, _now_us())
                elif kind == "reset":
                    result.feed.reset(message.reset.since, message.reset.first)
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    deadline = time.monotonic() + duration
    counter = 0
    while time.monotonic() < deadline:
        counter += 1
        request = wirelab_pb2.EchoRequest(id=str(counter), ts=_now_us(), payload=b"x")
        result.timed(lambda request=request: stub.Echo(request, timeout=2).id == request.id)
        time.sleep(0.05)
    stream.cancel()
    reader.join(2)
    channel.close()
    return result


SMOKERS: dict[str, Callable[[str, int, float], ProtocolResult]] = {
    "rest": smoke_rest,
    "sse": smoke_sse,
    "ws": smoke_ws,
    "grpc": smoke_grpc,
}


def run_smoke(host: str, ports: dict[str, int], duration: float) -> list[ProtocolResult]:
    """Smoke every protocol in ``ports`` at once; one result per protocol."""
    results: dict[str, ProtocolResult] = {}

    def run_one(protocol: str) -> None:
        try:
            results[protocol] = SMOKERS[protocol](host, ports[protocol], duration)
        except Exception as exc:
            results[protocol] = ProtocolResult(
                protocol, failures=1, error=f"{type(exc).__name__}: {exc}"
            )

    threads = [threading.Thread(target=run_one, args=(name,)) for name in ports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 30)
    return [results.get(name, ProtocolResult(name, error="did not finish")) for name in ports]
