"""The body of a streamed HTTP/1.1 response, decoded as it arrives (RFC 9112, 6 and 7.1).

The SSE user parses the status line and headers with llhttp (geventhttpclient's parser) and
then needs only the body, event by event, for as long as the stream lasts. Keeping a whole
response parser per connection for that costs memory on every one of tens of thousands of
idle streams and a C-to-Python callback per read; :class:`BodyDecoder` is the body framing
alone, one small object:

- ``chunked``: chunk-size lines (hex, optional ``;extensions``), the data, the CRLF after
  it; the last chunk (size 0) and any trailer fields end the body;
- ``Content-Length``: that many bytes;
- neither: everything until the server closes the connection.

Bare LF is accepted where CRLF is due (RFC 9112 2.2 lets a recipient do so). A chunk-size
line or trailer line longer than :data:`MAX_LINE_BYTES`, or one that does not parse, is a
:class:`BodyFramingError`: the stream ends, as a parse error in llhttp would end it.
"""

from __future__ import annotations

__all__ = ["MAX_LINE_BYTES", "BodyDecoder", "BodyFramingError"]

#: Longest chunk-size or trailer line accepted (extensions included).
MAX_LINE_BYTES = 4096

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_CHUNKED, _LENGTH, _UNTIL_CLOSE = range(3)


class BodyFramingError(ValueError):
    """The body is not framed as its headers said (a bad chunk-size line, say)."""


class BodyDecoder:
    """Feed it the body's bytes as they arrive; it returns the payload they carry."""

    __slots__ = ("_mode", "_pending", "_remaining", "_state", "complete")

    def __init__(self, *, chunked: bool, content_length: int | None = None) -> None:
        if chunked:
            self._mode = _CHUNKED
        elif content_length is not None:
            self._mode = _LENGTH
        else:
            self._mode = _UNTIL_CLOSE
        self._state = _SIZE
        self._remaining = content_length or 0
        self._pending = b""
        #: The body ended (last chunk, or Content-Length reached); more bytes are ignored.
        self.complete = self._mode == _LENGTH and not self._remaining

    @classmethod
    def for_headers(cls, transfer_encoding: str | None, content_length: str | None) -> BodyDecoder:
        """The decoder a response's framing headers call for.

        Raises:
            BodyFramingError: a transfer coding other than chunked, or a bad length.
        """
        if transfer_encoding:
            codings = [part.strip().lower() for part in transfer_encoding.split(",")]
            if codings[-1] != "chunked" or len(codings) > 1:
                raise BodyFramingError(f"unsupported Transfer-Encoding {transfer_encoding!r}")
            return cls(chunked=True)
        if content_length is not None:
            text = content_length.strip()
            if not text.isascii() or not text.isdigit():
                raise BodyFramingError(f"bad Content-Length {content_length!r}")
            return cls(chunked=False, content_length=int(text))
        return cls(chunked=False)

    def feed(self, data: bytes) -> bytes:
        """The payload in ``data`` (possibly empty: framing only, or a partial line)."""
        mode = self._mode
        if mode == _UNTIL_CLOSE:
            return data
        if self.complete:
            return b""
        if mode == _LENGTH:
            if len(data) >= self._remaining:
                data = data[: self._remaining]
                self.complete = True
            self._remaining -= len(data)
            return data
        return self._chunks(self._pending + data if self._pending else data)

    def _chunks(self, buffer: bytes) -> bytes:
        out: list[bytes] = []
        position, size = 0, len(buffer)
        while position < size:
            state = self._state
            if state == _DATA:
                end = min(size, position + self._remaining)
                out.append(buffer[position:end])
                self._remaining -= end - position
                position = end
                if not self._remaining:
                    self._state = _DATA_END
            elif state == _DATA_END:
                position = self._data_end(buffer, position, size)
            elif state == _DONE:
                position = size
            else:
                position = self._line(buffer, position, size)
            if position < 0:  # a line or CRLF still incomplete: wait for more
                position = -position - 1
                break
        self._pending = buffer[position:] if position < size else b""
        return out[0] if len(out) == 1 else b"".join(out)

    def _data_end(self, buffer: bytes, position: int, size: int) -> int:
        """Past the CRLF (or LF) after a chunk's data; ``-position - 1`` to wait."""
        byte = buffer[position]
        if byte == 10:  # LF
            position += 1
        elif byte == 13:  # CR, then LF
            if position + 1 == size:
                return -position - 1
            if buffer[position + 1] != 10:
                raise BodyFramingError("chunk data not followed by CRLF")
            position += 2
        else:
            raise BodyFramingError("chunk data longer than its size")
        self._state = _SIZE
        return position

    def _line(self, buffer: bytes, position: int, size: int) -> int:
        """Past a chunk-size or trailer line; ``-position - 1`` to wait for its end."""
        end = buffer.find(b"\n", position)
        if end < 0:
            if size - position > MAX_LINE_BYTES:
                raise BodyFramingError("chunk line too long")
            return -position - 1
        line = buffer[position:end]
        if len(line) > MAX_LINE_BYTES:
            raise BodyFramingError("chunk line too long")
        if line[-1:] == b"\r":
            line = line[:-1]
        if self._state == _TRAILER:
            if not line:
                self._state = _DONE
                self.complete = True
        else:
            self._remaining = _chunk_size(line)
            self._state = _DATA if self._remaining else _TRAILER
        return end + 1


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip(b" \t")
    # int(text, 16) alone would also take "0x1f", "+1f" and "1_f".
    if not text or len(text) > 16 or text.translate(None, _HEX_DIGITS):
        raise BodyFramingError(f"bad chunk size {line[:40]!r}")
    return int(text, 16)
