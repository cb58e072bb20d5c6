"""Frames split from received bytes: the fast path and websocket-client's own parser agree."""

from __future__ import annotations

import os

import pytest
import websocket
from hypothesis import given, settings
from hypothesis import strategies as st

from wirelab.ws_frames import MAX_FRAME_BYTES, FrameReader

TEXT, BINARY, CONTINUATION = 0x1, 0x2, 0x0
CLOSE, PING, PONG = 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = False) -> bytes:
    """One frame as a server (or, masked, a misbehaving server) would send it."""
    head = bytes([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if mask else 0
    if len(payload) < 126:
        head += bytes([mask_bit | len(payload)])
    elif len(payload) < 1 << 16:
        head += bytes([mask_bit | 126]) + len(payload).to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + len(payload).to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


class Recorder(FrameReader):
    def __init__(self) -> None:
        super().__init__(websocket.WebSocket(skip_utf8_validation=True))
        self.seen: list[tuple[str, int | None, bytes]] = []

    def on_message(self, payload: bytes) -> None:
        self.seen.append(("message", None, payload))

    def on_control(self, opcode: int, payload: bytes) -> None:
        self.seen.append(("control", opcode, payload))


_stream = st.lists(
    st.one_of(
        st.tuples(st.just("text"), st.binary(max_size=200)),
        # 16- and 64-bit lengths, without generating that much random data.
        st.tuples(st.just("text"), st.sampled_from([300, 70_000]).map(lambda n: b"x" * n)),
        st.tuples(st.just("binary"), st.binary(max_size=300)),
        st.tuples(st.just("ping"), st.binary(max_size=125)),
        st.tuples(st.just("fragmented"), st.lists(st.binary(max_size=50), min_size=2, max_size=4)),
        st.tuples(st.just("masked"), st.binary(max_size=200)),
    ),
    max_size=8,
)


def serialise(items: list) -> tuple[bytes, list]:
    wire, expected = b"", []
    for kind, value in items:
        if kind in ("text", "binary", "masked"):
            wire += frame(BINARY if kind == "binary" else TEXT, value, mask=kind == "masked")
            expected.append(("message", None, value))
        elif kind == "ping":
            wire += frame(PING, value)
            expected.append(("control", PING, value))
        else:
            for index, piece in enumerate(value):
                opcode = TEXT if index == 0 else CONTINUATION
                wire += frame(opcode, piece, fin=index == len(value) - 1)
            expected.append(("message", None, b"".join(value)))
    return wire, expected


@settings(max_examples=150, deadline=None)
@given(_stream, st.lists(st.integers(0, 200_000), max_size=30))
def test_any_split_of_a_frame_stream_yields_its_messages_and_control_frames(items, cuts) -> None:
    wire, expected = serialise(items)
    reader = Recorder()
    previous = 0
    for cut in [*sorted({cut % (len(wire) + 1) for cut in cuts}), len(wire)]:
        reader.feed(wire[previous:cut])
        previous = cut
    assert reader.seen == expected


def test_a_message_inside_a_fragmented_one_is_a_protocol_error() -> None:
    reader = Recorder()
    with pytest.raises(websocket.WebSocketProtocolException):
        reader.feed(frame(TEXT, b"first half", fin=False) + frame(TEXT, b"intruder"))


def test_reserved_bits_are_refused_as_websocket_client_refuses_them() -> None:
    reader = Recorder()
    with pytest.raises(websocket.WebSocketProtocolException, match="rsv"):
        reader.feed(bytes([0x80 | 0x40 | TEXT, 2]) + b"hi")


def test_a_close_frame_reaches_on_control_with_its_code_and_reason() -> None:
    reader = Recorder()
    reader.feed(frame(CLOSE, (1001).to_bytes(2, "big") + b'{"reconnect_after_ms":50}'))
    assert reader.seen == [("control", CLOSE, b'\x03\xe9{"reconnect_after_ms":50}')]


def test_a_frame_announcing_more_than_the_limit_is_refused_before_it_is_buffered() -> None:
    reader = Recorder()
    header = bytes([0x80 | BINARY, 127]) + (MAX_FRAME_BYTES + 1).to_bytes(8, "big")
    with pytest.raises(websocket.WebSocketProtocolException, match="longer than"):
        reader.feed(header + b"x" * 100)
