"""The incremental event-stream parser: any chunking of a valid stream gives the same events."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirelab.sse_parser import SseEvent, SseParser, SseProtocolError

# -- a model of valid streams ---------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"),
    max_size=12,
)
_field_value = _text.filter(lambda value: not value.startswith(" "))


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[SseEvent]]:
    """A serialised stream (random line ends, BOM, comments) and the events it must yield."""
    line_end = draw(st.sampled_from(["\n", "\r", "\r\n", "mixed"]))
    ends = ["\n", "\r", "\r\n"]
    lines: list[str] = []
    expected: list[SseEvent] = []
    last_id = ""
    retry: int | None = None
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            lines.append(":" + draw(_text))  # a heartbeat comment
        event_type = draw(st.one_of(st.none(), _field_value.filter(bool)))
        data = draw(st.lists(_text, max_size=3))
        event_id = draw(st.one_of(st.none(), _field_value))
        new_retry = draw(st.one_of(st.none(), st.integers(0, 100_000)))
        if event_type is not None:
            lines.append(f"event: {event_type}")
        for line in data:
            # "data:x" may drop the space only when the value does not start with one.
            spaced = line.startswith(" ") or draw(st.booleans())
            lines.append(f"data: {line}" if spaced else f"data:{line}")
        if event_id is not None:
            lines.append(f"id: {event_id}")
            last_id = event_id
        if new_retry is not None:
            lines.append(f"retry: {new_retry}")
            retry = new_retry
        lines.append("")
        if data:
            expected.append(SseEvent(event_type or "message", "\n".join(data), last_id, retry))
    body = ""
    previous_end = ""
    for line in lines:
        end = draw(st.sampled_from(ends)) if line_end == "mixed" else line_end
        if previous_end == "\r" and not line and end == "\n":
            end = "\r"  # "\r" then an empty line ended by "\n" would be one CRLF, not two ends
        body += line + end
        previous_end = end
    raw = body.encode()
    if draw(st.booleans()):
        raw = b"\xef\xbb\xbf" + raw
    return raw, expected


def feed_in_chunks(raw: bytes, cuts: list[int]) -> list[SseEvent]:
    parser = SseParser()
    events: list[SseEvent] = []
    previous = 0
    for cut in [*sorted({min(max(cut, 0), len(raw)) for cut in cuts}), len(raw)]:
        events.extend(parser.feed(raw[previous:cut]))
        previous = cut
    return events


@settings(max_examples=150, deadline=None)
@given(streams(), st.lists(st.integers(0, 400), max_size=30))
def test_any_chunking_of_a_valid_stream_yields_the_same_events(
    stream: tuple[bytes, list[SseEvent]], cuts: list[int]
) -> None:
    raw, expected = stream
    assert SseParser().feed(raw) == expected
    assert feed_in_chunks(raw, cuts) == expected


@settings(max_examples=50, deadline=None)
@given(streams())
def test_byte_by_byte_feeding_yields_the_same_events(stream: tuple[bytes, list[SseEvent]]) -> None:
    raw, expected = stream
    assert feed_in_chunks(raw, list(range(len(raw)))) == expected


# -- edge cases, each as the specification words it ------------------------------------------


def test_multi_line_data_joins_with_newlines_and_keeps_inner_spaces() -> None:
    events = SseParser().feed(b"data: first\ndata:  second\ndata\n\n")
    assert events == [SseEvent("message", "first\n second\n", "", None)]


def test_crlf_split_across_chunks_is_one_line_end_not_two() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\r") == [SseEvent("message", "a", "", None)]
    # The next "\n" closes the CRLF opened by the "\r" above: no extra (empty) line.
    assert parser.feed(b"\ndata: b\r\n\r\n") == [SseEvent("message", "b", "", None)]


def test_lone_cr_ends_lines() -> None:
    assert SseParser().feed(b"event: x\rdata: y\r\r") == [SseEvent("x", "y", "", None)]


def test_bom_is_dropped_once_even_when_split_but_only_at_the_start() -> None:
    parser = SseParser()
    assert parser.feed(b"\xef") == []
    assert parser.feed(b"\xbb") == []
    assert parser.feed(b"\xbfdata: a\n\n") == [SseEvent("message", "a", "", None)]
    # A second BOM is content: it makes a field name that means nothing, so it is ignored.
    assert parser.feed(b"\xef\xbb\xbfdata: b\n\n") == []


def test_comments_are_counted_and_never_dispatched() -> None:
    parser = SseParser()
    assert parser.feed(b": heartbeat\n\n:\n\n") == []
    assert parser.comments == 2


def test_a_block_without_data_dispatches_nothing_but_its_id_persists() -> None:
    parser = SseParser()
    assert parser.feed(b"id: 7\nevent: reset\n\n") == []
    assert parser.last_event_id == "7"
    assert parser.feed(b"data: x\n\n") == [SseEvent("message", "x", "7", None)]


def test_an_id_takes_effect_only_when_its_block_ends() -> None:
    parser = SseParser()
    parser.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b")  # the second block is cut off
    assert parser.last_event_id == "1"


def test_id_with_nul_is_ignored_and_empty_id_resets() -> None:
    parser = SseParser()
    parser.feed(b"id: 5\ndata: a\n\n")
    parser.feed(b"id: 6\x00\ndata: b\n\n")
    assert parser.last_event_id == "5"
    parser.feed(b"id\ndata: c\n\n")
    assert parser.last_event_id == ""


def test_retry_takes_only_ascii_digits() -> None:
    parser = SseParser()
    parser.feed(b"retry: 1500\n\nretry: 12a\n\nretry: \xd9\xa3\n\nretry:\n\n")
    assert parser.retry_ms == 1500


def test_unknown_fields_and_field_names_without_colon_are_ignored() -> None:
    events = SseParser().feed(b"foo: bar\nevent\ndata: x\n\n")
    assert events == [SseEvent("message", "x", "", None)]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert SseParser().feed(b"data: \xff\n\n")[0].data == "\ufffd"


def test_utf8_sequence_split_across_chunks_decodes_whole() -> None:
    raw = "data: café\n\n".encode()
    cut = raw.index(b"\xc3") + 1
    parser = SseParser()
    assert parser.feed(raw[:cut]) == []
    assert parser.feed(raw[cut:])[0].data == "café"


def test_an_endless_line_is_refused_instead_of_buffered() -> None:
    parser = SseParser(max_line_bytes=1024)
    with pytest.raises(SseProtocolError):
        parser.feed(b"data: " + b"x" * 2000)


def test_the_reference_targets_frames_parse_as_expected() -> None:
    frames = (
        b"retry: 1000\n\n"
        b'id: 41\ndata: {"seq":41}\n\n'
        b": heartbeat\n\n"
        b'event: reset\nid: 99\ndata: {"since":3,"first":100}\n\n'
        b'event: goaway\nretry: 2345\ndata: {"reconnect_after_ms":2345}\n\n'
    )
    events = SseParser().feed(frames)
    assert [(e.type, e.id, e.retry_ms) for e in events] == [
        ("message", "41", 1000),
        ("reset", "99", 1000),
        ("goaway", "99", 2345),
    ]


# -- against a reference written line by line from the specification -------------------------


def reference_parse(raw: bytes) -> tuple[list[SseEvent], str, int | None, int]:
    """WHATWG 9.2.6 read literally: decode, split lines, interpret each one in turn."""
    text = raw.decode("utf-8", "replace").removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # the last piece has no line end yet
    events, data, event_type, id_buffer, last_id, retry, comments = [], [], "", "", "", None, 0
    for line in lines:
        if not line:
            last_id = id_buffer
            if data:
                events.append(SseEvent(event_type or "message", "\n".join(data), last_id, retry))
            data, event_type = [], ""
            continue
        if line.startswith(":"):
            comments += 1
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    return events, last_id, retry, comments


_raw_line = st.one_of(
    st.sampled_from([b"data", b"data:", b"data: ", b"id:", b"id: 7", b"event: x", b"retry: 15"]),
    st.builds(bytes.__add__, st.sampled_from([b"data: ", b"id: ", b": ", b"event:", b""]),
              st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b)),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_raw_line, st.sampled_from([b"\n", b"\r\n", b"\r"])), max_size=30),
    st.booleans(),
    st.lists(st.integers(0, 600), max_size=20),
)
def test_the_parser_agrees_with_a_line_by_line_reading_of_the_specification(
    lines, bom, cuts
) -> None:
    """Any bytes (invalid UTF-8 included), any line ends, any chunking: the same events,
    last event id, reconnection time and comment count as the literal reading."""
    raw = (b"\xef\xbb\xbf" if bom else b"") + b"".join(line + end for line, end in lines)
    parser = SseParser()
    events = []
    previous = 0
    for cut in [*sorted({min(cut, len(raw)) for cut in cuts}), len(raw)]:
        events.extend(parser.feed(raw[previous:cut]))
        previous = cut
    assert (events, parser.last_event_id, parser.retry_ms, parser.comments) == reference_parse(raw)
