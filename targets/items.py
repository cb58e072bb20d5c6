"""The REST target's resources: versioned items and the idempotency-key cache."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .feed.event import now_us


@dataclass(slots=True)
class Item:
    """A versioned resource. ``version`` is the ETag: it changes on every write."""

    id: int
    version: int
    data: Any
    created_us: int
    updated_us: int

    @property
    def etag(self) -> str:
        return f'"{self.id}.{self.version}"'

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "version": self.version,
            "data": self.data,
            "created_us": self.created_us,
            "updated_us": self.updated_us,
        }


class StoreFullError(Exception):
    """The store holds ``max_items`` already: a load test created more than it deleted."""


class ItemStore:
    """Items in id order (ids only grow, so insertion order is id order)."""

    def __init__(self, max_items: int = 1_000_000) -> None:
        self.max_items = max_items
        self._items: dict[int, Item] = {}
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._items)

    def create(self, data: Any) -> Item:
        if len(self._items) >= self.max_items:
            raise StoreFullError(f"store holds {self.max_items} items")
        now = now_us()
        item = Item(self._next_id, 1, data, now, now)
        self._items[item.id] = item
        self._next_id += 1
        return item

    def get(self, item_id: int) -> Item | None:
        return self._items.get(item_id)

    def replace(self, item: Item, data: Any) -> Item:
        item.data = data
        item.version += 1
        item.updated_us = now_us()
        return item

    def delete(self, item_id: int) -> None:
        self._items.pop(item_id, None)

    def page_after(self, after_id: int, limit: int) -> tuple[list[Item], bool]:
        """Up to ``limit`` items with id > ``after_id``, and whether more follow.

        Ids only grow, so a page is a walk upward from the cursor: its cost depends on the
        page (and deletions inside it), not on how deep the cursor is, unlike an offset.
        """
        found: list[Item] = []
        items = self._items
        item_id = max(after_id, 0) + 1
        while item_id < self._next_id:
            item = items.get(item_id)
            if item is not None:
                if len(found) == limit:
                    return found, True
                found.append(item)
            item_id += 1
        return found, False


@dataclass(slots=True)
class StoredResponse:
    """What a POST answered, kept so a retry with the same key gets the same answer."""

    fingerprint: str
    status: int
    body: bytes
    headers: list[tuple[str, str]]
    stored_at: float


class IdempotencyCache:
    """Idempotency-Key → original response, bounded in size and age (LRU + TTL)."""

    def __init__(self, *, ttl: float = 24 * 3600, max_keys: int = 100_000) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()

    @staticmethod
    def fingerprint(method: str, path: str, body: bytes) -> str:
        return hashlib.blake2b(b"%b %b\n%b" % (method.encode(), path.encode(), body)).hexdigest()

    def get(self, key: str) -> StoredResponse | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry.stored_at > self.ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def put(
        self,
        key: str,
        fingerprint: str,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]],
    ) -> None:
        self._entries[key] = StoredResponse(fingerprint, status, body, headers, time.monotonic())
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
