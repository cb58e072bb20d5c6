"""Locust user classes for every protocol wirelab measures.

Use them from a locustfile, directly or as base classes for your own service::

    from wirelab.users import WebSocketUser

    class MyWs(WebSocketUser):
        ws_url = "wss://realtime.example.com"
        ws_path = "/socket"

======================  ===================================================================
class                   what one user does
======================  ===================================================================
``RestUser``            CRUD mix (ETag/If-Match, Idempotency-Key retry) and ``POST /echo``
``RestEchoUser``        only ``POST /echo`` (stateless: safe across replicas)
``ShortPollUser``       polls ``/events?since=`` every second (+-20%), freshness lag
``LongPollUser``        long polls ``/events?since=&wait=``, freshness lag
``SseUser``             one SSE stream, resumed with Last-Event-ID across reconnects
``WebSocketUser``       echo + ping round trips and the feed on one WebSocket
``GrpcUser``            unary Echo with deadline, Subscribe stream with resume, bidi Chat
``WebSocketFeedUser``   only the WebSocket feed subscription (one greenlet per connection)
``GrpcFeedUser``        only the gRPC Subscribe stream (one greenlet per connection)
======================  ===================================================================

``RestUserBase``, ``WebSocketUserBase`` and ``GrpcUserBase`` are the same users without
tasks: Locust adds a subclass's tasks to its base's, so a class that should run only its
own tasks (calling the operations: ``self.echo()``, ``self.create_item()``...) starts there.

Importing this package registers wirelab's command-line options (:mod:`.options`), the
check that every class has a target (:mod:`.preflight`), the open-model plumbing
(:mod:`.open_model`) and wirelab's metrics plugin. The user classes load lazily, so a
locustfile that uses only SSE never imports gRPC.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

import gevent

from ..limits import raise_open_files_limit

# Imported for what importing does: Locust options, listeners and the metrics plugin, which
# records wirelab's own figures from Locust's request events.
from ..metrics import plugin  # noqa: F401
from . import open_model, options, preflight  # noqa: F401

raise_open_files_limit()  # every Locust process of wirelab holds its users' connections

# gevent records, for every greenlet it creates, the greenlet that spawned it and ten frames
# of the spawning stack (for gevent.util's run-info dumps): ~0.6 KiB per user, in a worker
# that holds tens of thousands. Off, unless GEVENT_TRACK_GREENLET_TREE asks for it.
if "GEVENT_TRACK_GREENLET_TREE" not in os.environ:
    gevent.config.track_greenlet_tree = False

if TYPE_CHECKING:
    from .grpc import GrpcFeedUser, GrpcUser, GrpcUserBase
    from .open_model import OpenModelUser
    from .polling import LongPollUser, ShortPollUser
    from .rest import RestEchoUser, RestUser, RestUserBase
    from .sse import SseUser
    from .stream import StreamSession
    from .ws import WebSocketFeedUser, WebSocketUser, WebSocketUserBase

__all__ = [
    "GrpcFeedUser",
    "GrpcUser",
    "GrpcUserBase",
    "LongPollUser",
    "OpenModelUser",
    "RestEchoUser",
    "RestUser",
    "RestUserBase",
    "ShortPollUser",
    "SseUser",
    "StreamSession",
    "WebSocketFeedUser",
    "WebSocketUser",
    "WebSocketUserBase",
]

_WHERE = {
    "GrpcFeedUser": ".grpc",
    "GrpcUser": ".grpc",
    "GrpcUserBase": ".grpc",
    "LongPollUser": ".polling",
    "OpenModelUser": ".open_model",
    "RestEchoUser": ".rest",
    "RestUser": ".rest",
    "RestUserBase": ".rest",
    "ShortPollUser": ".polling",
    "SseUser": ".sse",
    "StreamSession": ".stream",
    "WebSocketFeedUser": ".ws",
    "WebSocketUser": ".ws",
    "WebSocketUserBase": ".ws",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
