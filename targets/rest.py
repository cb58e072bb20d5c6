"""The REST target: CRUD on /items, request/response echo, and polling on the feed.

Behaviours a production API should have and load tests should see:
ETag + If-Match optimistic concurrency (412 on a stale write, 428 when If-Match is
missing), Idempotency-Key on POST (a retry returns the original response), cursor
pagination, faithful 4xx vs 5xx with JSON error bodies, and delta polling on
``GET /events?since=N`` with ETag/304 and an optional long-poll ``wait``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable
from typing import Any

import orjson

from .feed.base import Page
from .feed.event import now_us
from .http.messages import HttpError, Request, Response
from .http.server import Router
from .http.target import HttpTarget
from .items import IdempotencyCache, Item, ItemStore, StoreFullError
from .test_hooks import TestHooks

#: Longest long-poll a client may ask for; proxies commonly cut idle requests at 60 s.
MAX_WAIT_S = 55
MAX_PAGE_ITEMS = 500
MAX_IDEMPOTENCY_KEY = 255
_NO_STORE = ("Cache-Control", "no-store")
# Responses depend on who asks once auth is on; say so to every cache in between.
_PRIVATE = ("Cache-Control", "private, no-cache")
_VARY = ("Vary", "Authorization, Accept-Encoding")


def _encode_cursor(item_id: int) -> str:
    return base64.urlsafe_b64encode(f"i:{item_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "i":
            raise ValueError(kind)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise HttpError(400, "invalid_cursor", "cursor is not one this server issued") from None


def _etag_matches(header: str | None, etag: str) -> bool:
    """RFC 9110 list match; weak comparison is enough for If-None-Match on our tags."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


class RestTarget(HttpTarget):
    """CRUD, echo and polling over HTTP/1.1."""

    protocol = "rest"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.items = ItemStore()
        self.idempotency = IdempotencyCache()
        super().__init__(*args, **kwargs)
        #: Poll answers with no new events; the "wasted request" count of polling.
        self.empty_polls = 0
        self.polls = 0
        self.hooks = TestHooks(self.settings.test_latency, self.settings.test_stall)

    def add_routes(self, router: Router) -> None:
        router.add("GET", "/items", self.list_items)
        router.add("POST", "/items", self.create_item)
        router.add("GET", "/items/{id}", self.get_item)
        router.add("PUT", "/items/{id}", self.replace_item)
        router.add("DELETE", "/items/{id}", self.delete_item)
        router.add("POST", "/echo", self.echo)
        router.add("GET", "/events", self.events)

    def stats(self) -> dict[str, object]:
        return {
            **super().stats(),
            "items": len(self.items),
            "polls": self.polls,
            "empty_polls": self.empty_polls,
            **({"test_hooks": self.hooks.stats()} if self.hooks.active else {}),
        }

    # -- items -----------------------------------------------------------------------

    def _item_or_404(self, request: Request) -> Item:
        raw = request.params["id"]
        item = self.items.get(int(raw)) if raw.isdigit() else None
        if item is None:
            raise HttpError(404, "not_found", f"no item {raw}")
        return item

    @staticmethod
    def _object_body(request: Request) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(422, "invalid_body", "body must be a JSON object")
        return body

    def list_items(self, request: Request) -> Response:
        self.authorize(request)
        limit = request.query_int("limit", 50, minimum=1, maximum=MAX_PAGE_ITEMS)
        cursor = request.query.get("cursor") if request.query_string else None
        after = _decode_cursor(cursor) if cursor else 0
        items, more = self.items.page_after(after, limit)
        next_cursor = _encode_cursor(items[-1].id) if more else None
        body = {"items": [item.to_dict() for item in items], "next_cursor": next_cursor}
        return Response.json(body, headers=[_PRIVATE, _VARY])

    def create_item(self, request: Request) -> Response:
        self.authorize(request)
        key = request.headers.get("idempotency-key")
        if key is None:
            return self._create(request)
        if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
            raise HttpError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 chars")
        fingerprint = IdempotencyCache.fingerprint(request.method, request.path, request.body)
        stored = self.idempotency.get(key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise HttpError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request",
                )
            headers = [*stored.headers, ("Idempotent-Replayed", "true")]
            return Response(stored.body, status=stored.status, headers=headers, content_type=None)
        response = self._create(request)
        # Only successes are remembered: a 4xx must be fixable by retrying corrected input.
        self.idempotency.put(key, fingerprint, response.status, response.body, response.headers)
        return response

    def _create(self, request: Request) -> Response:
        data = self._object_body(request)
        try:
            item = self.items.create(data)
        except StoreFullError as exc:
            raise HttpError(507, "store_full", str(exc)) from None
        headers = [("ETag", item.etag), ("Location", f"/items/{item.id}"), _NO_STORE]
        return Response.json(item.to_dict(), status=201, headers=headers)

    def get_item(self, request: Request) -> Response:
        self.authorize(request)
        item = self._item_or_404(request)
        headers = [("ETag", item.etag), _PRIVATE, _VARY]
        if _etag_matches(request.headers.get("if-none-match"), item.etag):
            return Response(status=304, headers=headers)
        return Response.json(item.to_dict(), headers=headers)

    def replace_item(self, request: Request) -> Response:
        self.authorize(request)
        item = self._item_or_404(request)
        if_match = request.headers.get("if-match")
        if if_match is None:
            raise HttpError(
                428, "precondition_required", "PUT needs If-Match with the item's current ETag"
            )
        if not _etag_matches(if_match, item.etag):
            raise HttpError(
                412,
                "precondition_failed",
                "the item changed since you read it",
                headers=[("ETag", item.etag)],
            )
        data = self._object_body(request)
        self.items.replace(item, data)
        return Response.json(item.to_dict(), headers=[("ETag", item.etag), _NO_STORE])

    def delete_item(self, request: Request) -> Response:
        self.authorize(request)
        item = self._item_or_404(request)
        if_match = request.headers.get("if-match")
        if if_match is not None and not _etag_matches(if_match, item.etag):
            raise HttpError(
                412,
                "precondition_failed",
                "the item changed since you read it",
                headers=[("ETag", item.etag)],
            )
        self.items.delete(item.id)
        return Response(status=204)

    # -- request/response ------------------------------------------------------------

    def echo(self, request: Request) -> Response | Awaitable[Response]:
        """Echo a JSON object back with ``server_ts``: the REST twin of WS echo and gRPC Echo."""
        self.authorize(request)
        body = self._object_body(request)
        delay_ms = body.get("delay_ms")
        if delay_ms is not None:
            return self._delayed_echo(body, delay_ms)
        if self.hooks.active:
            return self._held_echo(body)
        body["server_ts"] = now_us()
        return Response.json(body, headers=[_NO_STORE])

    async def _held_echo(self, body: dict[str, Any]) -> Response:
        """TEST HOOK: ``--test-latency`` / ``--test-stall`` service time (see test_hooks)."""
        await self.hooks.hold()
        body["server_ts"] = now_us()
        return Response.json(body, headers=[_NO_STORE])

    async def _delayed_echo(self, body: dict[str, Any], delay_ms: object) -> Response:
        """TEST HOOK: ``delay_ms`` in the body simulates service time (capped at 60 s).

        Benchmarks and fidelity tests use it to give the target a known latency
        distribution; it holds no lock, so other requests are served meanwhile.
        """
        if not isinstance(delay_ms, int | float) or not 0 <= delay_ms <= 60_000:
            raise HttpError(400, "invalid_delay", "delay_ms must be a number from 0 to 60000")
        await asyncio.sleep(delay_ms / 1000)
        body["server_ts"] = now_us()
        return Response.json(body, headers=[_NO_STORE])

    # -- polling ---------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        """``GET /events?since=N[&limit=L][&wait=S]``: the events after N, polled.

        ``wait`` > 0 makes it a long poll: the server holds the request until an event
        arrives, the wait ends, or the server starts draining. The ETag is the cursor,
        so a client repeating ``If-None-Match`` gets a bodiless 304 until there is news.
        """
        self.authorize(request)
        feed = self.feed
        since = request.query_int("since", feed.head, minimum=0)
        limit = request.query_int("limit", 100, minimum=1, maximum=1000)
        wait = request.query_int("wait", 0, minimum=0, maximum=MAX_WAIT_S)
        self.polls += 1
        if wait and feed.head == since and not self.draining:
            await self._wait_for_news(since, wait)
        page = await feed.read(since, limit)
        if not page.events and page.reset is None:
            self.empty_polls += 1
        etag = f'"{page.cursor}"'
        headers = [("ETag", etag), _PRIVATE, _VARY]
        if page.reset is None and _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status=304, headers=headers)
        return Response(_page_body(page), headers=headers)

    async def _wait_for_news(self, since: int, wait: float) -> None:
        news = asyncio.ensure_future(self.feed.wait_beyond(since, wait))
        drained = asyncio.ensure_future(self.server.draining.wait())
        try:
            await asyncio.wait({news, drained}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (news, drained):
                task.cancel()


def _page_body(page: Page) -> bytes:
    # Events are spliced in as their cached JSON rather than re-encoded per poll.
    reset = orjson.dumps(page.reset.to_dict()) if page.reset is not None else b"null"
    events = b",".join(event.json for event in page.events)
    return b'{"events":[%b],"cursor":%d,"head":%d,"reset":%b}' % (
        events,
        page.cursor,
        page.head,
        reset,
    )
