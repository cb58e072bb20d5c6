"""The locustfiles the benchmark's generators run (written to a work directory per run).

Every one starts with :data:`PRELUDE`: a request listener that keeps one exact-merge
histogram per request name (latency from the intended start in open-model runs, and the
service time beside it) and hands them to the harness through ``harness_report()``. Plain
Locust classes report through the same listener, so both sides are measured alike.
"""

from __future__ import annotations

PRELUDE = """
import os
import time

from locust import events
from wirelab.metrics.histogram import LogHistogram
from wirelab.metrics.recorder import recorder

# Nothing counts until spawning is complete plus this warm-up (connections, first calls),
# nor once the users are being stopped: an answer read while the generator tears its
# users down waits for that, not for the server.
_WARMUP_S = float(os.environ.get("BENCH_WARMUP_S", "1"))
_STATE = {"from": None, "last": None, "stopping": False, "dropped": 0, "failures": 0}
_LATENCY = {}
_SERVICE = {}


@events.spawning_complete.add_listener
def _bench_spawned(**_):
    if _STATE["from"] is None:
        _STATE["from"] = time.perf_counter() + _WARMUP_S


@events.test_stopping.add_listener
def _bench_stopping(**_):
    _STATE["stopping"] = True


def _measuring():
    start = _STATE["from"]
    return start is not None and not _STATE["stopping"] and time.perf_counter() >= start


_recorder = recorder()
_dropped = _recorder.dropped


def _bench_dropped(protocol, name, count=1):
    if _measuring():
        _STATE["dropped"] += count
    _dropped(protocol, name, count)


_recorder.dropped = _bench_dropped


@events.request.add_listener
def _bench_record(name, response_time, exception=None, context=None, **_):
    if (context and context.get("wirelab_stream")) or not _measuring():
        return
    if exception is not None:
        _STATE["failures"] += 1
        return
    histogram = _LATENCY.get(name)
    if histogram is None:
        histogram = _LATENCY[name] = LogHistogram()
    histogram.record(response_time * 1000)
    _STATE["last"] = time.perf_counter()
    service = context.get("service_time_s") if context else None
    if service is not None:
        histogram = _SERVICE.get(name)
        if histogram is None:
            histogram = _SERVICE[name] = LogHistogram()
        histogram.record(service * 1e6)


def harness_report():
    start, last = _STATE["from"], _STATE["last"]
    return {
        # From the end of the warm-up to the last answer recorded.
        "measured_s": last - start if start is not None and last is not None else 0.0,
        "dropped": _STATE["dropped"],
        "failures": _STATE["failures"],
        "latency": {name: h.to_wire() for name, h in _LATENCY.items()},
        "service": {name: h.to_wire() for name, h in _SERVICE.items()},
    }
"""

#: Request/response, open model (``--rate``): one class per variant.
REQUEST = (
    PRELUDE
    + """
from wirelab.users import GrpcUserBase, RestUserBase, WebSocketUserBase


# A start that finds every lane busy is dropped at once (k6's rule, --open-max-wait 0): the
# rate ladder reads an overloaded step from its dropped starts, not from queueing latency.
class RestKeepAlive(RestUserBase):
    open_max_wait_s = 0


class RestNewConnection(RestUserBase):
    open_max_wait_s = 0

    # "Connection: close": the server answers and closes, the client dials again.
    def open_operation(self, intended):
        body = b'{"payload":"%s"}' % self.payload.encode()
        self.call("POST", self.echo_path, "rest POST /echo new-conn", body=body,
                  headers={**self._json_headers, "Connection": "close"}, intended=intended)


class WsEcho(WebSocketUserBase):
    subscribe_feed = False
    open_max_wait_s = 0


class GrpcEcho(GrpcUserBase):
    subscribe_feed = False
    open_max_wait_s = 0
"""
)

#: Push: the same feed to N clients, one class per mechanism.
PUSH = (
    PRELUDE
    + """
from wirelab.users import GrpcFeedUser, LongPollUser, ShortPollUser, SseUser, WebSocketFeedUser


class ShortPoll(ShortPollUser):
    pass


class LongPoll(LongPollUser):
    pass


class Sse(SseUser):
    pass


class Ws(WebSocketFeedUser):
    pass


class Grpc(GrpcFeedUser):
    pass
"""
)

#: Idle stream connections (a feed that publishes nothing).
IDLE = """
from wirelab.users import GrpcFeedUser, SseUser, WebSocketFeedUser


class IdleSse(SseUser):
    pass


class IdleWs(WebSocketFeedUser):
    pass


class IdleGrpc(GrpcFeedUser):
    pass
"""

#: Closed loop, no wait: wirelab's RestUser echo against plain Locust's FastHttpUser.
#: ``DELAY_MS`` asks the target for a known service time (its ``delay_ms`` test hook).
CLOSED_REST = (
    PRELUDE
    + """
import os
from locust import FastHttpUser, User, constant, task
from wirelab.users import RestUserBase, WebSocketUserBase

DELAY_MS = int(os.environ.get("BENCH_DELAY_MS", "0"))
BODY = (b'{"payload":"%s","delay_ms":%d}' % (b"x" * 64, DELAY_MS) if DELAY_MS
        else b'{"payload":"%s"}' % (b"x" * 64))
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class Wirelab(RestUserBase):
    wait_time = constant(0)

    @task
    def echo_task(self):
        self.call("POST", "/echo", "rest POST /echo", body=BODY)


class PlainLocust(FastHttpUser):
    wait_time = constant(0)

    @task
    def echo(self):
        self.client.post("/echo", data=BODY, headers=JSON, name="POST /echo")


class WirelabWs(WebSocketUserBase):
    subscribe_feed = False
    wait_time = constant(0)

    @task
    def echo_task(self):
        self.echo()
"""
)
