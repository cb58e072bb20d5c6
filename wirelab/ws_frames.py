"""Incoming frames of a websocket-client connection, parsed from bytes as they arrive.

websocket-client reads a frame by pulling from its socket: two bytes of header, then the
length, then the payload, each a ``recv`` of its own (and each a blocking wait under
gevent). A subscriber that receives thousands of events a second wants the opposite: one
read of whatever arrived, then every frame in it. :class:`FrameReader` takes those bytes
(from :class:`wirelab.users.socket_reader.SocketReader`) and splits them into frames for
its subclass's :meth:`~FrameReader.on_message` and :meth:`~FrameReader.on_control`.

The common frame, an unfragmented text or binary message from the server (FIN set, no
extension bits, unmasked), is cut out of the buffer directly. Every other frame (control
frames, fragments, reserved bits, a masked frame) is handed whole to websocket-client's own
parser and continuation logic (``frame_buffer``, ``continuous_frame``), so it is validated
and reassembled exactly as websocket-client does; only its source of bytes changes.
"""

from __future__ import annotations

from typing import Any

import websocket

__all__ = ["MAX_FRAME_BYTES", "FrameReader"]

#: A frame longer than this is refused (the connection ends) instead of being buffered.
MAX_FRAME_BYTES = 16 * 1024 * 1024

_TEXT, _BINARY, _CONTINUATION = (
    websocket.ABNF.OPCODE_TEXT,
    websocket.ABNF.OPCODE_BINARY,
    websocket.ABNF.OPCODE_CONT,
)
#: First header byte of an unfragmented text or binary frame without extension bits.
_WHOLE = frozenset({0x80 | _TEXT, 0x80 | _BINARY})


class FrameReader:
    """Splits received bytes into messages and control frames; a subclass says what to do
    with them (:meth:`on_message`, :meth:`on_control`, called in the event loop: they must
    not block)."""

    __slots__ = ("_buffer", "_continuation", "_frames", "_pending")

    def __init__(self, ws: websocket.WebSocket) -> None:
        self._buffer = b""
        self._pending = b""
        # websocket-client's parser now pulls from the frame being handed to it.
        self._frames = ws.frame_buffer
        self._frames.recv = self._take
        self._continuation = ws.cont_frame

    def feed(self, data: bytes) -> None:
        """Handle every complete frame in what has arrived so far; keep the rest."""
        buffer = self._buffer + data if self._buffer else data
        size = len(buffer)
        position = 0
        on_message = self.on_message
        while size - position >= 2:
            first = buffer[position]
            length = buffer[position + 1]
            if length < 126:
                start = position + 2
            elif length == 126:
                if size - position < 4:
                    break
                start = position + 4
                length = (buffer[position + 2] << 8) | buffer[position + 3]
            else:  # masked, or a 64-bit length: websocket-client's parser
                end = self._frame_end(buffer, position, size)
                if end is None or end > size:
                    break
                self._slow(buffer[position:end])
                position = end
                continue
            end = start + length
            if end > size:
                break
            if first in _WHOLE and self._continuation.recving_frames is None:
                on_message(buffer[start:end])
            else:
                self._slow(buffer[position:end])
            position = end
        self._buffer = buffer[position:] if position < size else b""
        if len(self._buffer) > MAX_FRAME_BYTES + 14:
            raise websocket.WebSocketProtocolException(f"frame longer than {MAX_FRAME_BYTES} bytes")

    @staticmethod
    def _frame_end(buffer: bytes, position: int, size: int) -> int | None:
        """Where the frame at ``position`` ends, or ``None`` until its header is complete."""
        second = buffer[position + 1]
        length = second & 0x7F
        header = 2 + (4 if second & 0x80 else 0)
        if length == 126:
            header += 2
            if size - position < header:
                return None
            length = int.from_bytes(buffer[position + 2 : position + 4], "big")
        elif length == 127:
            header += 8
            if size - position < header:
                return None
            length = int.from_bytes(buffer[position + 2 : position + 10], "big")
        if length > MAX_FRAME_BYTES:
            raise websocket.WebSocketProtocolException(
                f"frame of {length} bytes, longer than {MAX_FRAME_BYTES}"
            )
        return position + header + length

    def _slow(self, frame_bytes: bytes) -> None:
        self._pending = frame_bytes
        frame = self._frames.recv_frame()
        opcode = frame.opcode
        if opcode in (_TEXT, _BINARY, _CONTINUATION):
            continuation = self._continuation
            continuation.validate(frame)
            continuation.add(frame)
            if continuation.is_fire(frame):
                _, frame = continuation.extract(frame)
                self.on_message(frame.data)
        else:
            self.on_control(opcode, frame.data)

    def on_message(self, payload: bytes) -> Any:
        """A whole text or binary message arrived."""
        raise NotImplementedError

    def on_control(self, opcode: int, payload: bytes) -> Any:
        """A close, ping or pong frame arrived."""
        raise NotImplementedError

    def _take(self, count: int) -> bytes:
        pending = self._pending
        if not pending:
            # Only whole frames are handed over; websocket-client would wait for more forever.
            raise websocket.WebSocketProtocolException("frame shorter than its header says")
        self._pending = pending[count:]
        return pending[:count]
