"""``ShortPollUser`` and ``LongPollUser``: delta polling of the feed on ``GET /events?since=``.

Both poll with a cursor (``since`` = last seq seen) and ``If-None-Match`` (the server's ETag
is the cursor, so "nothing new" costs a bodiless 304), check every event through the shared
:class:`~wirelab.users.stream.StreamSession`, and measure *freshness lag* — publish ``ts``
to the moment the poll answer is read — into the stream series, the same histogram push
users fill with delivery lag. That makes "how stale is polled data" comparable with SSE,
WebSocket and gRPC on the same feed.

- short poll: a request every ``poll_interval`` seconds, jittered +-20% so that N clients
  do not synchronise into a thundering herd;
- long poll: ``wait=`` makes the server hold the request until there is news (or the wait
  ends); the next poll follows at once.

Figures (protocol ``poll``): the poll requests are Locust request events named ``poll short`` /
``poll long`` (``request_type="poll"``); events go to the stream series of the same names
(lag events as ``poll short deliver`` / ``poll long deliver``). An *empty* poll (304, or a
long poll that timed out) is a wasted request: its event carries
``context["empty_poll"] = True``, and the stream series counts it in ``empty_polls`` when the
metrics package has that counter.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, ClassVar

import orjson
from locust import task
from locust.contrib.fasthttp import FastHttpUser

from .options import stop_test_on_bad_config, token
from .rest import bind_rest_target, spread_sources
from .stream import StreamSession
from .tls import env_insecure

__all__ = ["LongPollUser", "ShortPollUser"]


def _count_empty_poll(series: Any) -> None:
    # StreamSeries has fixed slots; until the metrics package adds ``empty_polls`` the
    # figure travels only in the request events' context.
    with contextlib.suppress(AttributeError):
        series.empty_polls += 1


class _PollUser(FastHttpUser):
    abstract = True
    protocol: ClassVar[str] = "poll"
    #: Where the target address comes from (checked before users spawn).
    wirelab_target: ClassVar[tuple[str, str, str]] = ("rest_url", "rest_url", "http")
    #: Stream series and request name.
    poll_name: ClassVar[str] = ""
    #: Base URL; ``--rest-url``/``WIRELAB_REST_URL`` win, then this, then ``--host``.
    rest_url: ClassVar[str | None] = None
    events_path: ClassVar[str] = "/events"
    #: Events per page (the server caps it at 1000).
    limit: ClassVar[int] = 500
    #: Where the first poll starts: ``None`` live (the server's head), or a seq to replay from.
    start_since: ClassVar[int | None] = None
    #: Seconds between polls, and the +- fraction of jitter around it.
    poll_interval: ClassVar[float] = 1.0
    jitter: ClassVar[float] = 0.2
    #: Long poll: seconds the server may hold a request (0: short poll).
    long_poll_wait: ClassVar[int] = 0
    #: Reconnect policy spec after a failed poll (``--reconnect`` wins).
    reconnect: ClassVar[str | None] = None
    #: Skip certificate verification for this class (as ``--tls-insecure`` does for all);
    #: Locust's own default (skip) is not wirelab's.
    insecure: ClassVar[bool] = env_insecure()
    #: Local addresses to connect from, rotated per connection; ``--source-addresses``
    #: wins. Unset, loopback targets spread over 127.0.0.0/8 (see
    #: :mod:`wirelab.users.source_addresses`).
    source_addresses: ClassVar[list[str] | None] = None

    def __init__(self, environment: Any) -> None:
        with stop_test_on_bad_config(self):
            bind_rest_target(self, environment)
        # Long polls are held by the server; the socket must outlast them.
        if self.long_poll_wait:
            self.network_timeout = max(self.network_timeout, self.long_poll_wait + 10.0)
        super().__init__(environment)
        with stop_test_on_bad_config(self):
            spread_sources(self)
        self.session = StreamSession.for_user(
            self, self.poll_name, deliver_name=f"{self.poll_name} deliver"
        )
        bearer = token()
        self._headers = {"Accept": "application/json"}
        if bearer:
            self._headers["Authorization"] = f"Bearer {bearer}"
        self._etag: str | None = None
        self._cursor: int | None = None
        self._backoff = 0.0
        #: Polls that brought nothing (304, or a long poll that timed out).
        self.empty_polls = 0
        self.polls = 0

    def wait_time(self) -> float:
        if self._backoff:
            delay, self._backoff = self._backoff, 0.0
            return delay
        base = self.poll_interval
        if base <= 0:
            return 0.0
        return random.uniform(base * (1 - self.jitter), base * (1 + self.jitter))

    def on_stop(self) -> None:
        self.session.close()

    def _path(self) -> str:
        since = self._cursor if self._cursor is not None else self.session.resume_point
        query = f"limit={self.limit}"
        if since is not None:
            query = f"since={since}&{query}"
        if self.long_poll_wait:
            query += f"&wait={self.long_poll_wait}"
        return f"{self.events_path}?{query}"

    @task
    def poll(self) -> None:
        """One poll: conditional GET, check the page, move the cursor."""
        session = self.session
        headers = self._headers
        if self._etag is not None:
            headers = {**headers, "If-None-Match": self._etag}
        with self.client.request(
            "GET", self._path(), name=self.poll_name, headers=headers, catch_response=True
        ) as response:
            meta = response.request_meta
            meta["request_type"] = self.protocol
            status = response.status_code
            self.polls += 1
            if status == 304:
                self._empty(meta)
                response.success()
            elif status == 200:
                try:
                    page = orjson.loads(response.content)
                except orjson.JSONDecodeError as exc:
                    response.failure(f"bad page: {exc}")
                    self._failed()
                    return
                if self._apply(page):
                    self._empty(meta)
                else:
                    meta["context"]["empty_poll"] = False
                self._etag = response.headers.get("ETag")
                response.success()
            else:
                error = f"HTTP {status}" if status else getattr(response, "error", None)
                response.failure(error or "no response")
                self._failed()
                return
        if not session.is_connected:
            session.connected()
            session.attempt = 0
            session.policy.reset()

    def _apply(self, page: dict[str, Any]) -> bool:
        """Check a page's reset and events; return whether it was empty."""
        session = self.session
        reset = page.get("reset")
        if reset:
            session.reset(int(reset["since"]), int(reset["first"]))
        events = page.get("events") or ()
        for event in events:
            session.event(event["seq"], event["ts"])
        cursor = page.get("cursor")
        if cursor is not None:
            self._cursor = int(cursor)
            # A live start learns its position from the first page: from then on the
            # first event must follow it, and nothing can slip by unchecked.
            session.anchor(self._cursor)
        return not events and not reset

    def _empty(self, meta: dict[str, Any]) -> None:
        self.empty_polls += 1
        meta["context"]["empty_poll"] = True
        _count_empty_poll(self.session.series)

    def _failed(self) -> None:
        """A failed poll: counted like a dropped stream, then a backoff by the policy."""
        session = self.session
        if session.is_connected:
            session.disconnected()
        self._backoff = session.policy.next_delay(session.attempt)
        session.attempt += 1
        # A new connection may land on another replica: its ETags mean nothing here.
        self._etag = None


class ShortPollUser(_PollUser):
    """Polls every ``poll_interval`` s (+-20%) with a cursor and ``If-None-Match``."""

    abstract = True
    poll_name: ClassVar[str] = "poll short"
    poll_interval: ClassVar[float] = 1.0


class LongPollUser(_PollUser):
    """Long polls (``wait=long_poll_wait``): the server answers when there is news."""

    abstract = True
    poll_name: ClassVar[str] = "poll long"
    poll_interval: ClassVar[float] = 0.0
    long_poll_wait: ClassVar[int] = 20
