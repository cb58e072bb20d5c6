"""The streamed response body decoder: chunked (any split), Content-Length, until close."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirelab.http_body import MAX_LINE_BYTES, BodyDecoder, BodyFramingError


def chunked(parts: list[bytes], *, extension: bool, line_end: bytes, trailer: bool) -> bytes:
    wire = b""
    for part in parts:
        wire += b"%x" % len(part) + (b";name=value" if extension else b"") + line_end
        wire += part + line_end
    wire += b"0" + line_end + (b"X-Checksum: 1" + line_end if trailer else b"") + line_end
    return wire


def feed_split(decoder: BodyDecoder, wire: bytes, cuts: list[int]) -> bytes:
    out = b""
    previous = 0
    for cut in [*sorted({cut % (len(wire) + 1) for cut in cuts}), len(wire)]:
        out += decoder.feed(wire[previous:cut])
        previous = cut
    return out


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.binary(min_size=1, max_size=300), max_size=12),
    cuts=st.lists(st.integers(0, 5000), max_size=40),
    extension=st.booleans(),
    line_end=st.sampled_from([b"\r\n", b"\n"]),
    trailer=st.booleans(),
)
def test_any_split_of_a_chunked_body_yields_its_payload_and_completes(
    parts, cuts, extension, line_end, trailer
) -> None:
    wire = chunked(parts, extension=extension, line_end=line_end, trailer=trailer)
    decoder = BodyDecoder(chunked=True)
    assert feed_split(decoder, wire, cuts) == b"".join(parts)
    assert decoder.complete
    assert decoder.feed(b"5\r\nlater\r\n") == b""  # nothing counts after the last chunk


def test_an_incomplete_chunked_body_is_not_complete() -> None:
    decoder = BodyDecoder(chunked=True)
    assert decoder.feed(b"5\r\nhel") == b"hel"
    assert decoder.feed(b"lo\r\n") == b"lo"
    assert not decoder.complete


@pytest.mark.parametrize(
    "wire",
    [b"0x1f\r\n", b"+1\r\n", b"1_0\r\n", b"zz\r\n", b"\r\n", b"3\r\nabcX", b"3\r\nabc\rX"],
    ids=["0x-prefix", "sign", "underscore", "not-hex", "empty", "data-too-long", "bad-crlf"],
)
def test_a_malformed_chunk_is_a_framing_error(wire: bytes) -> None:
    with pytest.raises(BodyFramingError):
        BodyDecoder(chunked=True).feed(wire)


def test_an_endless_chunk_size_line_is_refused_not_buffered() -> None:
    decoder = BodyDecoder(chunked=True)
    with pytest.raises(BodyFramingError, match="too long"):
        decoder.feed(b"1" + b";" * (MAX_LINE_BYTES + 10))


def test_content_length_ends_the_body_and_drops_what_follows() -> None:
    decoder = BodyDecoder.for_headers(None, "5")
    assert decoder.feed(b"abc") == b"abc"
    assert decoder.feed(b"defg") == b"de"
    assert decoder.complete
    assert BodyDecoder.for_headers(None, "0").complete


def test_without_framing_headers_the_body_lasts_until_the_connection_closes() -> None:
    decoder = BodyDecoder.for_headers(None, None)
    assert decoder.feed(b"id: 1\n") == b"id: 1\n"
    assert not decoder.complete


@pytest.mark.parametrize(
    ("transfer_encoding", "content_length"),
    [("gzip, chunked", None), ("gzip", None), (None, "-1"), (None, "1e3")],
)
def test_framing_headers_it_cannot_decode_are_refused(transfer_encoding, content_length) -> None:
    with pytest.raises(BodyFramingError):
        BodyDecoder.for_headers(transfer_encoding, content_length)
