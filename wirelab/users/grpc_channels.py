"""The gRPC channels of a worker process: users share them, a bounded number of streams each.

A gRPC channel is a client's HTTP/2 connection (``grpc.use_local_subchannel_pool`` gives
every channel a TCP connection of its own) and HTTP/2 multiplexes any number of calls on it,
as a real service's clients do. Under gevent, grpcio serves each channel with a greenlet of
its own that waits for the channel's completion queue in a native thread of the hub's
thread pool: one parked thread per channel, for as long as the channel has a call open. A
channel per user therefore costs a native thread, a TCP connection and grpc-core's
per-connection state (~100 KiB together, measured) per stream, and once there are more
channels than pool threads the channels beyond them are not served at all. So users share:

- ``streams_per_channel = N`` (``--grpc-streams-per-channel``, default 100, the smallest
  ``SETTINGS_MAX_CONCURRENT_STREAMS`` RFC 9113 recommends a server allow): a user takes a
  channel that has fewer than N users, else a new one. A worker with 2,000 stream users
  holds 20 channels: 20 TCP connections, 20 threads.
- ``streams_per_channel = 1``: every user its own channel and TCP connection (the shape of
  separate client processes), at the cost above.

Channels are keyed by their target (replica order included) and options, so users that
start at different replicas get different channels. A channel closes when its last user
releases it. The hub's thread pool is grown to the number of open channels (plus the
pool's own default) whenever a channel is made.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from gevent import get_hub

from ..capacity import GRPC_STREAMS_PER_CHANNEL

__all__ = ["DEFAULT_STREAMS_PER_CHANNEL", "ChannelLease", "ChannelPool", "channel_pool"]

#: Users per shared channel unless configured.
DEFAULT_STREAMS_PER_CHANNEL = GRPC_STREAMS_PER_CHANNEL

#: Pool threads kept free for everything else that uses the hub's pool (name resolution).
_SPARE_THREADS = 10


@dataclass(slots=True, eq=False)
class ChannelLease:
    """One user's hold on a (possibly shared) channel; :meth:`ChannelPool.release` ends it."""

    channel: grpc.Channel
    _entry: _Entry = field(repr=False)

    def shared(self, make: Callable[[grpc.Channel], Any]) -> Any:
        """``make(channel)``, made once per channel and kept with it (a stub: its method
        objects cost ~2 KiB, the same for every user of the channel)."""
        made = self._entry.made
        found = made.get(make)
        if found is None:
            found = made[make] = make(self.channel)
        return found


@dataclass(slots=True, eq=False)
class _Entry:
    channel: grpc.Channel
    key: tuple[Any, ...]
    users: int = 0
    made: dict[Any, Any] = field(default_factory=dict)


class ChannelPool:
    """Channels by ``(target, options, credentials)``, each leased to at most N users."""

    def __init__(self) -> None:
        self._channels: dict[tuple[Any, ...], list[_Entry]] = {}
        self.open_channels = 0

    def acquire(
        self,
        target: str,
        options: list[tuple[str, Any]],
        credentials: grpc.ChannelCredentials | None,
        streams_per_channel: int,
    ) -> ChannelLease:
        """A channel to ``target`` with fewer than ``streams_per_channel`` users, or a new one."""
        key = (target, tuple(options), id(credentials))
        entries = self._channels.setdefault(key, [])
        for entry in entries:
            if entry.users < streams_per_channel:
                break
        else:
            entry = _Entry(self._open(target, options, credentials), key)
            entries.append(entry)
        entry.users += 1
        return ChannelLease(entry.channel, entry)

    def release(self, lease: ChannelLease) -> None:
        """The user is done with its channel; the last user out closes it."""
        entry = lease._entry
        entry.users -= 1
        if entry.users > 0:
            return
        entries = self._channels.get(entry.key, [])
        if entry in entries:
            entries.remove(entry)
            if not entries:
                del self._channels[entry.key]
            self.open_channels -= 1
            entry.channel.close()

    def _open(
        self,
        target: str,
        options: list[tuple[str, Any]],
        credentials: grpc.ChannelCredentials | None,
    ) -> grpc.Channel:
        self.open_channels += 1
        threadpool = get_hub().threadpool
        if threadpool.maxsize < self.open_channels + _SPARE_THREADS:
            threadpool.maxsize = self.open_channels + _SPARE_THREADS
        if credentials is None:
            return grpc.insecure_channel(target, options=options)
        return grpc.secure_channel(target, credentials, options=options)


@functools.cache
def channel_pool() -> ChannelPool:
    """This process's channel pool (one per process, made on first use)."""
    return ChannelPool()
