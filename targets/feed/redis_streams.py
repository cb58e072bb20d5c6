"""The shared feed: the log is a Redis stream, so a client can resume on any replica.

Stream entry IDs are ``<seq>-0``. Redis refuses an XADD whose ID is not above the stream's
top, which makes the stream itself the arbiter if two replicas ever publish at once: seqs
stay unique and contiguous. One replica at a time holds a short lease and publishes; every
replica tails the stream with one blocking XREAD and fans out locally, so Redis sees one
reader per replica, not one per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import Feed, Page
from .event import Event, Reset, now_us

log = logging.getLogger(__name__)

#: Redis connections one replica opens for publishing and replay reads. A storm of resumes
#: whose points are older than the local cache reads the log all at once: bounded, they
#: queue for a connection instead of each opening one (a descriptor, and a Redis client).
REDIS_POOL_SIZE = 16

#: Compare-and-extend: only the lease holder may extend its lease.
_RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def _seq_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def _event_of(entry_id: bytes, fields: dict[bytes, bytes]) -> Event:
    return Event(_seq_of(entry_id), int(fields[b"t"]), fields[b"d"].decode())


class RedisFeed(Feed):
    """A feed backed by the Redis stream ``key``, trimmed to about ``retention`` events."""

    def __init__(
        self,
        url: str,
        *,
        key: str = "wirelab:feed",
        retention: int = 100_000,
        cache_size: int = 10_000,
        lease_ms: int = 3000,
    ) -> None:
        super().__init__(cache_size=cache_size)
        self.url = url
        self.key = key
        self.retention = retention
        self.lease_ms = lease_ms
        self.replica_id = uuid.uuid4().hex
        self._redis: aioredis.Redis | None = None
        self._tail_redis: aioredis.Redis | None = None
        self._tail_task: asyncio.Task[None] | None = None
        self._renew = None
        self._published = 0
        self._leader = False
        self._closing = False

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("RedisFeed.start() was not awaited")
        return self._redis

    async def start(self) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(self.url, max_connections=REDIS_POOL_SIZE)
        self._redis = aioredis.Redis.from_pool(pool)
        # XREAD BLOCK holds its connection; a separate client keeps it off the pool that
        # serves replay reads and publishes.
        self._tail_redis = aioredis.from_url(self.url)
        await self._redis.ping()
        self._renew = self._redis.register_script(_RENEW_LEASE)
        top = await self._top_seq()
        self.head = top
        self._published = top
        self._tail_task = asyncio.create_task(self._tail(top), name=f"tail {self.key}")

    async def close(self) -> None:
        self._closing = True
        tail = self._tail_task
        if tail is not None:
            tail.cancel()
            # A blocked XREAD does not always notice cancellation at once; closing its
            # client below breaks the read, so never wait on the task unboundedly.
            await asyncio.wait({tail}, timeout=1.0)
        if self._leader and self._redis is not None:
            # Hand the lease over at once instead of letting it time out.
            try:
                lease = f"{self.key}:publisher"
                if (await self._redis.get(lease)) == self.replica_id.encode():
                    await self._redis.delete(lease)
            except (RedisConnectionError, RedisTimeoutError):
                pass
        for client in (self._redis, self._tail_redis):
            if client is not None:
                await client.aclose()
        if tail is not None and not tail.done():
            await asyncio.wait({tail}, timeout=2.0)

    async def _top_seq(self) -> int:
        newest = await self.redis.xrevrange(self.key, count=1)
        return _seq_of(newest[0][0]) if newest else 0

    async def claim_publisher(self) -> bool:
        lease = f"{self.key}:publisher"
        try:
            if self._leader and await self._renew(
                keys=[lease], args=[self.replica_id, self.lease_ms]
            ):
                return True
            self._leader = bool(
                await self.redis.set(lease, self.replica_id, nx=True, px=self.lease_ms)
            )
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("feed lease unavailable: %s", exc)
            self._leader = False
        if self._leader:
            # A new leader continues from the stream's real top, not from its own memory;
            # but never below a seq this replica already saw: a Redis that restarted empty
            # (no persistence) must not make seqs start again at 1, which clients would
            # take for old events.
            try:
                top = await self._top_seq()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("feed lease unavailable: %s", exc)
                self._leader = False
                return False
            self._published = max(top, self._published, self.head)
        return self._leader

    @property
    def next_seq(self) -> int:
        # The local head trails the stream by the tail's latency; the leader's own count
        # does not.
        return self._published + 1

    async def append(self, data: str) -> Event | None:
        seq = self._published + 1
        event = Event(seq, now_us(), data)
        try:
            await self.redis.xadd(
                self.key,
                {"t": event.ts, "d": data},
                id=f"{seq}-0",
                maxlen=self.retention,
                approximate=True,
            )
        except ResponseError:
            # Another replica published this seq: step down and let the lease decide.
            self._leader = False
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
                self._published = await self._top_seq()
            return None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            # Redis is gone: step down (the publisher retries the lease every second)
            # instead of letting the publisher task die with the connection.
            log.warning("feed append failed, publisher steps down: %s", exc)
            self._leader = False
            return None
        self._published = seq
        # The tail task delivers it to local subscribers, in order with everyone else's.
        return event

    async def _tail(self, after: int) -> None:
        last_id = f"{after}-0"
        backoff = 0.1
        # redis-py can swallow a cancellation that lands inside a blocking read, so the
        # loop also watches a flag of its own and blocks for short spells only.
        while not self._closing:
            try:
                assert self._tail_redis is not None
                reply = await self._tail_redis.xread({self.key: last_id}, block=500, count=1000)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if self._closing:
                    return
                log.warning("feed tail lost redis, retrying in %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self._deliver(_event_of(entry_id, fields))
                    last_id = entry_id

    async def _read_log(self, since: int, limit: int) -> Page:
        entries = await self.redis.xrange(self.key, min=f"({since}-0", max="+", count=limit)
        events = [_event_of(entry_id, fields) for entry_id, fields in entries]
        head = max(self.head, events[-1].seq if events else 0)
        if events:
            reset = Reset(since, events[0].seq) if events[0].seq > since + 1 else None
            return Page(since=since, events=events, reset=reset, head=head)
        top = await self._top_seq()
        if top < since:
            # The stream is behind the client: it was deleted or the feed restarted.
            return Page(since=since, reset=Reset(since, top + 1), head=top)
        return Page(since=since, head=max(head, top))
