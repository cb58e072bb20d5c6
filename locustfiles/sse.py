"""Server-Sent Events: one stream per user, resumed with Last-Event-ID across reconnects.

    locust -f locustfiles/sse.py --host http://127.0.0.1:8081
    locust -f locustfiles/sse.py --sse-url http://127.0.0.1:8081,http://127.0.0.1:9081 \\
        --reconnect full_jitter:base=0.5,cap=10
"""

from wirelab.users import SseUser


class Sse(SseUser):
    """Reads ``/stream``; see ``wirelab.users.SseUser``."""
