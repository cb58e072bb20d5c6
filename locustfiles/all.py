"""Every protocol at once, each against its own target URL.

    wirelab targets serve all --port-base 8080
    locust -f locustfiles/all.py --rest-url http://127.0.0.1:8080 \\
        --sse-url http://127.0.0.1:8081 --ws-url ws://127.0.0.1:8082 \\
        --grpc-target 127.0.0.1:8083

The URLs may also come from WIRELAB_REST_URL, WIRELAB_SSE_URL, WIRELAB_WS_URL and
WIRELAB_GRPC_TARGET. Locust spreads users over the classes by weight.
"""

from wirelab.users import (
    GrpcUser,
    LongPollUser,
    RestUser,
    ShortPollUser,
    SseUser,
    WebSocketUser,
)


class Rest(RestUser):
    weight = 2


class ShortPoll(ShortPollUser):
    weight = 1


class LongPoll(LongPollUser):
    weight = 1


class Sse(SseUser):
    weight = 2


class WebSocket(WebSocketUser):
    weight = 2


class Grpc(GrpcUser):
    weight = 2
