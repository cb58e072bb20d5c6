"""The SSE target: the feed as ``text/event-stream`` on ``GET /stream``.

Each event goes out as ``id: <seq>`` + ``data: <json>``, so a browser's EventSource (or
any client) resumes with ``Last-Event-ID``. Idle streams get ``:`` comment heartbeats,
shorter than proxies' idle timeouts. A lost resume point arrives as ``event: reset``;
a draining server sends ``event: goaway`` with a jittered ``retry:`` and closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from .feed.base import Subscription
from .feed.event import Event
from .http.messages import HttpError, Request, StreamResponse
from .http.server import Router
from .http.target import HttpTarget

_HEARTBEAT = b": heartbeat\n\n"


def _event_frame(event: Event) -> bytes:
    return b"id: %d\ndata: %b\n\n" % (event.seq, event.json)


class SseTarget(HttpTarget):
    """Server-Sent Events over HTTP/1.1 chunked responses."""

    protocol = "sse"
    count_tcp_accepts = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.active = 0
        self.resumes = 0
        self.streams_opened = 0
        #: Events sent from the log that were published before their stream resumed.
        self.replayed = 0

    def add_routes(self, router: Router) -> None:
        router.add("GET", "/stream", self.stream)

    def stats(self) -> dict[str, object]:
        return {
            **super().stats(),
            "active_streams": self.active,
            "streams_opened": self.streams_opened,
            "resumes": self.resumes,
            "replayed": self.replayed,
        }

    def stream(self, request: Request) -> StreamResponse:
        self.authorize(request)
        since = self._resume_point(request)
        if since is not None:
            self.resumes += 1
        subscription = self.open_subscription(since)
        # Events up to the head at resume time come from the log: they count as replayed.
        replay_until = self.feed.head if since is not None and since < self.feed.head else 0
        headers = [
            ("Content-Type", "text/event-stream; charset=utf-8"),
            ("Cache-Control", "no-cache"),
            # nginx and friends buffer responses unless told not to; a buffered stream
            # shows no error, it just never arrives.
            ("X-Accel-Buffering", "no"),
        ]
        return StreamResponse(self._frames(subscription, replay_until), headers=headers)

    def _resume_point(self, request: Request) -> int | None:
        """``Last-Event-ID`` (reconnects) or ``?since=`` (first connect) or live only."""
        raw = request.headers.get("last-event-id")
        if raw is None or raw == "":
            if request.query_string and "since" in request.query:
                return request.query_int("since", 0, minimum=0)
            return None
        raw = raw.strip()
        if not raw.isdigit():
            raise HttpError(400, "invalid_last_event_id", "Last-Event-ID must be a seq number")
        return int(raw)

    async def _frames(
        self, subscription: Subscription, replay_until: int = 0
    ) -> AsyncIterator[bytes]:
        settings = self.settings
        self.active += 1
        self.streams_opened += 1
        self.accepts.record()
        try:
            yield b"retry: %d\n\n" % settings.retry_ms
            while not subscription.closed:
                batch = await subscription.next_batch(timeout=settings.heartbeat)
                if not batch:
                    if not subscription.closed:
                        yield _HEARTBEAT
                    continue
                parts = []
                for message in batch:
                    if isinstance(message, Event):
                        parts.append(_event_frame(message))
                        if replay_until and message.seq <= replay_until:
                            self.replayed += 1
                    else:
                        # The id moves the client's Last-Event-ID past the hole, so its
                        # next reconnect does not ask for the lost range again.
                        parts.append(
                            b"event: reset\nid: %d\ndata: %b\n\n"
                            % (message.first - 1, message.json)
                        )
                yield b"".join(parts)
            if self.draining:
                hint = settings.reconnect_hint_ms()
                goaway = orjson.dumps({"reason": "draining", "reconnect_after_ms": hint})
                yield b"event: goaway\nretry: %d\ndata: %b\n\n" % (hint, goaway)
        finally:
            self.active -= 1
            self.release_subscription(subscription)
