"""The local address each client connection comes from.

The kernel tells TCP connections apart by (source address, source port, target address,
target port). With one source address, a client machine can hold at most as many
connections to one target port as it has ephemeral ports (32768-60999 here: ~28k), and a
100,000-connection run from one machine cannot exist. So clients spread over addresses:

- **Loopback targets** (``127.0.0.0/8``, ``localhost``): automatically. All of 127/8 is the
  loopback interface on Linux, so worker ``k`` binds its connections, round-robin, to the
  254 addresses ``127.(1 + k // 256).(k % 256).1-254``: ~7 million connections per target
  port per worker, and no two workers share an address. (``127.0.0.0/16`` is left alone:
  distributions put the host name on ``127.0.1.1``, resolvers on ``127.0.0.53``.)
- **Remote targets**: ``--source-addresses`` / ``WIRELAB_SOURCE_ADDRESSES`` (or a user
  class's ``source_addresses``): comma-separated addresses the machine owns, or a CIDR
  (``10.1.0.0/28``: its host addresses), rotated per connection. Given, it applies to
  loopback targets too.

Sockets are bound with ``IP_BIND_ADDRESS_NO_PORT``, so the port is chosen at connect time
for the whole four-tuple, not reserved on the address for every target alike. IPv6
loopback has one address (``::1``) and is not spread. gRPC cannot bind a source address
(grpcio has no channel argument for it); its users share HTTP/2 connections instead
(:mod:`.grpc_channels`), far fewer than one per user.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
from collections.abc import Iterator
from typing import Any

from ..source_addresses import loopback_block, parse_source_addresses

__all__ = [
    "SourceAddresses",
    "bind_source",
    "loopback_block",
    "parse_source_addresses",
    "source_addresses_for",
]

#: Linux: choose the source port at connect(), not at bind() (linux/in.h).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def _is_loopback_v4(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


class SourceAddresses:
    """A process-wide rotation over local addresses (every user of the list shares it)."""

    __slots__ = ("_next", "addresses")

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self._next: Iterator[str] = itertools.cycle(addresses)

    def next(self) -> tuple[str, int]:
        """The address (and port 0: any) for the next connection."""
        return (next(self._next), 0)


_rotations: dict[tuple[str, ...], SourceAddresses] = {}
#: The rotation of each option text seen (a /16 is parsed once, not per connection).
_by_text: dict[str, SourceAddresses] = {}
#: Each worker's loopback rotation: building its 254 addresses per connect cost 2% of a
#: worker's CPU in a ramp (py-spy, 100k-connection run).
_by_worker: dict[int, SourceAddresses] = {}


def _rotation(addresses: list[str]) -> SourceAddresses:
    key = tuple(addresses)
    rotation = _rotations.get(key)
    if rotation is None:
        rotation = _rotations[key] = SourceAddresses(addresses)
    return rotation


def source_addresses_for(
    environment: Any, host: str, class_value: list[str] | None = None
) -> SourceAddresses | None:
    """The rotation a connection to ``host`` takes its source address from, or ``None``
    (let the kernel choose): ``--source-addresses`` (else the class's list), else the
    worker's loopback block for an IPv4 loopback target.

    Raises:
        ValueError: ``--source-addresses`` does not parse.
    """
    # Locust's option parser only when a user asks (stream.py imports this module for
    # bind_source and stays free of Locust's parser at import time).
    from .options import setting  # noqa: PLC0415

    text = setting(environment, "source_addresses", ",".join(class_value or ()) or None)
    if text:
        rotation = _by_text.get(text)
        if rotation is None:
            rotation = _by_text[text] = _rotation(parse_source_addresses(text))
        return rotation
    if not _is_loopback_v4(host):
        return None
    runner = getattr(environment, "runner", None)
    index = getattr(runner, "worker_index", 0) or 0
    rotation = _by_worker.get(index)
    if rotation is None:
        rotation = _by_worker[index] = _rotation(loopback_block(index))
    return rotation


def bind_source(sock: socket.socket, source: tuple[str, int]) -> None:
    """Bind ``sock`` to ``source`` with the port left to connect() (see the module doc)."""
    if sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind(source)
