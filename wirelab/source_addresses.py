"""Which local addresses client connections come from: the plan, without sockets.

The kernel tells TCP connections apart by (source address, source port, target address,
target port), so one source address holds at most as many connections to one target port as
there are ephemeral ports (~28k here). Clients of loopback targets therefore spread over
127.0.0.0/8 by themselves (:func:`loopback_block`, one block of :data:`LOOPBACK_BLOCK`
addresses per worker), and clients of remote targets over the addresses
``--source-addresses`` / ``WIRELAB_SOURCE_ADDRESSES`` gives (:func:`parse_source_addresses`).
The users bind their sockets in :mod:`wirelab.users.source_addresses`; the run's pre-flight
(:mod:`wirelab.preflight`) counts the same addresses.
"""

from __future__ import annotations

import ipaddress
import itertools

__all__ = [
    "LOOPBACK_BLOCK",
    "MAX_ADDRESSES",
    "SOURCE_ADDRESSES_ENV",
    "loopback_block",
    "parse_source_addresses",
]

#: The variable (and ``--source-addresses``, its option) that names the addresses.
SOURCE_ADDRESSES_ENV = "WIRELAB_SOURCE_ADDRESSES"
#: Loopback addresses each worker connects from: ``127.(1 + k // 256).(k % 256).1-254``.
LOOPBACK_BLOCK = 254
#: Addresses of a CIDR beyond this are a mistake (or a /8), not a plan.
MAX_ADDRESSES = 65_536


def parse_source_addresses(text: str, *, name: str = "--source-addresses") -> list[str]:
    """``"10.0.0.5, 10.0.0.6"`` or ``"10.1.0.0/28"`` -> the addresses, in order.

    ``name``: what the message calls the setting (the option; empty: a scenario key, which
    its error names already).

    Raises:
        ValueError: not addresses or a network; the message names the bad part.
    """
    label = f"{name}: " if name else ""
    addresses: list[str] = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        try:
            if "/" in part:
                network = ipaddress.ip_network(part, strict=False)
                hosts = list(itertools.islice(network.hosts(), MAX_ADDRESSES + 1))
                if len(hosts) > MAX_ADDRESSES:
                    raise ValueError(f"{part} has more than {MAX_ADDRESSES} addresses")
                addresses.extend(str(host) for host in hosts or [network.network_address])
            else:
                addresses.append(str(ipaddress.ip_address(part)))
        except ValueError as exc:
            raise ValueError(f"{label}{part!r} is not an address or CIDR ({exc})") from None
    if not addresses:
        raise ValueError(f"{label}no address given")
    return addresses


def loopback_block(worker_index: int) -> list[str]:
    """The 254 loopback addresses worker ``worker_index`` connects from."""
    index = max(worker_index, 0) % (255 * 256)
    prefix = f"127.{1 + index // 256}.{index % 256}."
    return [f"{prefix}{host}" for host in range(1, LOOPBACK_BLOCK + 1)]
