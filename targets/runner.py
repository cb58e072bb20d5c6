"""Runs one or more targets in one process around one feed, until SIGTERM drains them."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from ..limits import raise_open_files_limit
from .base import Target, TargetSettings, drain_targets
from .collector import tune_collector
from .feed.base import Feed
from .feed.memory import MemoryFeed
from .feed.publisher import Publisher
from .feed.wakeup import WAKE_SLICE
from .registry import target_class

log = logging.getLogger("wirelab.targets")


@dataclass(slots=True)
class FeedSettings:
    """Where the feed's log lives and how fast it grows."""

    #: ``None``: an in-memory log (one replica). A redis:// URL: a shared stream.
    redis_url: str | None = None
    key: str = "wirelab:feed"
    #: Events per second appended by the publisher (0: no publisher on this replica).
    rate: float = 10.0
    #: Characters of ``data`` per event.
    payload_size: int = 64
    #: Events kept for resume; older resume points get a reset.
    retention: int = 10_000
    #: TEST HOOK: seqs never handed to clients (see ``Feed.skip_seqs``).
    skip_seqs: frozenset[int] = frozenset()
    #: Streams woken per event-loop turn when the feed moves (see :mod:`.feed.wakeup`).
    wake_slice: int = WAKE_SLICE


def build_feed(settings: FeedSettings) -> Feed:
    if settings.redis_url:
        from .feed.redis_streams import RedisFeed  # noqa: PLC0415 - redis only when asked

        # The replica's cache holds no more than the log keeps: a resume point out of
        # retention gets its reset on every replica alike, not only on those that restarted.
        return RedisFeed(
            settings.redis_url,
            key=settings.key,
            retention=settings.retention,
            cache_size=max(1, min(10_000, settings.retention)),
        )
    return MemoryFeed(retention=settings.retention)


@dataclass(slots=True)
class AdminSettings:
    """The admin port (see :mod:`.admin`): off unless a port is given."""

    #: ``None``: no admin server. 0: any free port.
    port: int | None = None
    #: Loopback by default: draining a replica must not be one request away for anyone.
    host: str = "127.0.0.1"


async def run_targets(
    ports: dict[str, int],
    settings: TargetSettings,
    feed_settings: FeedSettings,
    admin: AdminSettings | None = None,
) -> int:
    """Serve each protocol of ``ports`` until SIGTERM/SIGINT (or an admin drain);
    returns the exit status."""
    # Before any listener: every target sizes its connection limit from the raised one.
    raise_open_files_limit()
    feed = build_feed(feed_settings)
    feed.skip_seqs = feed_settings.skip_seqs
    feed.wake_slice = feed_settings.wake_slice
    await feed.start()
    publisher = Publisher(feed, rate=feed_settings.rate, payload_size=feed_settings.payload_size)
    targets: list[Target] = []
    for protocol, port in ports.items():
        target_settings = TargetSettings(**{**_as_dict(settings), "port": port})
        targets.append(target_class(protocol)(feed, target_settings))
    tune_collector()  # every module the targets need is imported by now
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    admin_server = None
    try:
        for target in targets:
            bound = await target.start()
            target.started = True
            log.info("listening", extra={"protocol": target.protocol, "port": bound})
        if admin is not None and admin.port is not None:
            from .admin import AdminServer  # noqa: PLC0415 - only processes with an admin port

            admin_server = AdminServer(targets, request_drain=stop.set)
            bound = await admin_server.start(admin.host, admin.port)
            log.info("admin listening", extra={"port": bound})
        publisher.start()
        await stop.wait()
        log.info("draining", extra={"grace_s": settings.grace})
        clean = await drain_targets(targets, settings)
        log.info("stopped", extra={"clean": clean})
        return 0
    finally:
        # The admin port outlives the drain, so a monitor reads the counters to the end.
        if admin_server is not None:
            await admin_server.close()
        await publisher.stop()
        await feed.close()


def _as_dict(settings: TargetSettings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in settings.__slots__}


def serve(
    ports: dict[str, int],
    settings: TargetSettings,
    feed_settings: FeedSettings,
    admin: AdminSettings | None = None,
) -> int:
    """Blocking entry point: run the targets on uvloop."""
    import uvloop  # noqa: PLC0415 - keeps `wirelab --help` fast

    return uvloop.run(run_targets(ports, settings, feed_settings, admin))
