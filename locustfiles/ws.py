"""WebSocket: echo and ping round trips plus the feed subscription, one socket per user.

locust -f locustfiles/ws.py --host ws://127.0.0.1:8082
locust -f locustfiles/ws.py --host ws://127.0.0.1:8082 --rate 500/s   # open-model echo
"""

from wirelab.users import WebSocketUser


class WebSocket(WebSocketUser):
    """Echo, ping and ``ws deliver`` on ``/ws``; see ``wirelab.users.WebSocketUser``."""
