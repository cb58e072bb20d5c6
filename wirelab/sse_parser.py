"""An incremental ``text/event-stream`` parser: bytes in, events out (WHATWG HTML, 9.2.6).

Written from the specification, not from the reference target's code, so that the load
generator checks the target instead of sharing its assumptions. Network reads split a
stream anywhere, so :meth:`SseParser.feed` accepts any chunking — in the middle of a line,
of a CRLF pair, of a UTF-8 sequence or of the byte-order mark — and returns the events
completed by that chunk. What the specification asks for, and what this does:

- lines end with CRLF, LF or CR; a leading UTF-8 BOM is dropped, once;
- ``data`` lines accumulate, joined by LF; an event is dispatched at a blank line, and only
  if it has data (a block of only ``id``/``event`` fields updates state but dispatches nothing);
- ``event`` sets the type (default ``message``); ``id`` sets the last event id, which
  takes effect at the end of its block (so a block cut off by a disconnect does not move
  the resume point) and persists across events; an ``id`` containing NUL is ignored;
  ``retry`` with only ASCII digits sets the reconnection time; unknown fields are ignored;
- a line starting with ``:`` is a comment: ignored, but counted, because that is how
  servers send heartbeats and a client tells a quiet stream from a dead one;
- a field name without a colon takes an empty value; one space after the colon is removed.

The parser knows nothing about sockets or gevent; it is pure and cheap to test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SseEvent", "SseParser", "SseProtocolError"]

_BOM = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"\r\n|\r|\n")
#: A line this long is a broken or hostile server, not an event: refuse instead of buffering.
DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024


class SseProtocolError(ValueError):
    """The stream cannot be an event stream (a line beyond the size limit)."""


@dataclass(slots=True)
class SseEvent:
    """One dispatched event.

    ``id`` is the last event id *as of this event* (it persists across events, as
    ``lastEventId`` does in a browser); ``retry_ms`` is the reconnection time in force.
    """

    type: str
    data: str
    id: str
    retry_ms: int | None = None


class SseParser:
    """Feed it bytes as they arrive; it returns the events each chunk completes."""

    __slots__ = (
        "_at_start",
        "_buffer",
        "_data",
        "_event_type",
        "_id_buffer",
        "_skip_lf",
        "comments",
        "last_event_id",
        "max_line_bytes",
        "retry_ms",
    )

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        #: The stream's last event id (sent back as ``Last-Event-ID`` on reconnect).
        self.last_event_id = ""
        #: Reconnection time the server asked for with ``retry:``, in ms (``None``: never).
        self.retry_ms: int | None = None
        #: Comment lines seen (heartbeats).
        self.comments = 0
        self._buffer = b""
        self._data: list[bytes] = []
        self._event_type = ""
        self._id_buffer = ""
        self._at_start = True
        # The previous chunk ended with CR: an LF opening this one completes that CRLF.
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Parse ``chunk`` (any part of the stream); return the events it completed."""
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buffer = self._buffer + chunk if self._buffer else chunk
        if self._at_start:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._buffer = buffer  # could still be a BOM: wait for more
                return []
            self._at_start = False
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM) :]
        if b"\r" not in buffer:
            # The common case (servers send LF only): one C-level split.
            lines = buffer.split(b"\n")
            rest = lines.pop()
        else:
            lines = []
            position = 0
            for match in _LINE_END.finditer(buffer):
                lines.append(buffer[position : match.start()])
                position = match.end()
            rest = buffer[position:]
            if position == len(buffer) and buffer.endswith(b"\r"):
                self._skip_lf = True
        if len(rest) > self.max_line_bytes:
            raise SseProtocolError(
                f"event-stream line longer than {self.max_line_bytes} bytes without a line end"
            )
        self._buffer = rest
        return self._lines(lines) if lines else []

    def _lines(self, lines: list[bytes]) -> list[SseEvent]:
        """Interpret complete lines (one loop, no call per line: this runs for every event
        every subscriber receives). Fields are matched as bytes and only values decoded;
        since ``:`` and LF are ASCII that decodes exactly as decoding each line would."""
        events: list[SseEvent] = []
        data = self._data
        for raw in lines:
            if not raw:
                self.last_event_id = self._id_buffer
                if data:
                    text = b"\n".join(data).decode("utf-8", "replace")
                    events.append(
                        SseEvent(
                            self._event_type or "message", text, self.last_event_id, self.retry_ms
                        )
                    )
                    data = self._data = []
                self._event_type = ""
                continue
            if raw[0] == 58:  # ":" a comment
                self.comments += 1
                continue
            colon = raw.find(b":")
            if colon < 0:
                name, value = raw, b""
            else:
                name = raw[:colon]
                value = raw[colon + 2 :] if raw[colon + 1 : colon + 2] == b" " else raw[colon + 1 :]
            if name == b"data":
                data.append(value)
            elif name == b"id":
                if b"\0" not in value:
                    self._id_buffer = value.decode("utf-8", "replace")
            elif name == b"event":
                self._event_type = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit():  # bytes.isdigit: ASCII digits only
                self.retry_ms = int(value)
        return events
