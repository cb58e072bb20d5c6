"""WebSocket on the wire, byte for byte (RFC 6455): what benchmarks and tests send raw.

A library client hides what these measurements need to see or to break: the exact frame
headers a server writes, a client that never reads, a frame that lies about its length.
So the benchmarks (bytes on the wire, fan-out, slow consumers) and the malformed-input tests
speak WebSocket themselves, with these three pieces.
"""

from __future__ import annotations

import base64
import os
import struct

__all__ = ["client_frame", "frame_header", "upgrade_request"]


def upgrade_request(
    host: str = "x", path: str = "/ws", *, subprotocol: str | None = None, extra: bytes = b""
) -> bytes:
    """The client's opening handshake (a fresh ``Sec-WebSocket-Key``); ``extra`` is more
    header lines, each ending in CRLF."""
    key = base64.b64encode(os.urandom(16))
    protocol = f"Sec-WebSocket-Protocol: {subprotocol}\r\n".encode() if subprotocol else b""
    return (
        b"GET %b HTTP/1.1\r\nHost: %b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %b\r\nSec-WebSocket-Version: 13\r\n%b%b\r\n"
        % (path.encode(), host.encode(), key, protocol, extra)
    )


def client_frame(
    opcode: int, payload: bytes, *, mask: bool = True, fin: bool = True, declared: int | None = None
) -> bytes:
    """One frame as a client sends it: masked (RFC 6455 section 5.3) unless ``mask=False``;
    ``declared`` puts a length in the header other than the payload's (for malformed input)."""
    length = len(payload) if declared is None else declared
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame_header(buffer: bytes | bytearray, position: int = 0) -> tuple[int, int] | None:
    """``(header bytes, payload length)`` of the frame at ``position``, or ``None`` while its
    header is not all in ``buffer`` yet. The header counts the masking key if there is one."""
    available = len(buffer) - position
    if available < 2:
        return None
    length = buffer[position + 1] & 0x7F
    header = 2
    if length == 126:
        header = 4
        if available < header:
            return None
        length = int.from_bytes(buffer[position + 2 : position + 4], "big")
    elif length == 127:
        header = 10
        if available < header:
            return None
        length = int.from_bytes(buffer[position + 2 : position + 10], "big")
    if buffer[position + 1] & 0x80:
        header += 4
    return header, length
