"""Property-based fuzzing of every parser wirelab owns: bad input raises only the documented
error type, and where a parser has an inverse (or a chunking freedom) the round trip holds.

Example counts are sized so the whole file runs in a few seconds; ``WIRELAB_FUZZ_EXAMPLES``
multiplies them for a longer local session.
"""

from __future__ import annotations

import contextlib
import math
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirelab.metrics.lineprotocol import Point, encode, parse_line
from wirelab.scenarios import ScenarioError, parse_scenario
from wirelab.sse_parser import SseParser, SseProtocolError
from wirelab.targets.ws_messages import (
    InvalidSinceError,
    ProtocolViolationError,
    parse_message,
    parse_since,
)
from wirelab.thresholds import ThresholdError, parse_threshold
from wirelab.units import parse_duration, parse_rate, parse_size

_SCALE = float(os.environ.get("WIRELAB_FUZZ_EXAMPLES", "1"))


def budget(n: int):
    return settings(
        max_examples=max(1, int(n * _SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )


# -- SSE -----------------------------------------------------------------------------------

_sse_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12
)
_sse_line = st.one_of(
    st.builds(lambda v: f"data: {v}", _sse_text),
    st.builds(lambda v: f"data:{v}", _sse_text),
    st.builds(lambda v: f"id: {v}", _sse_text),
    st.builds(lambda v: f"event: {v}", _sse_text),
    st.builds(lambda n: f"retry: {n}", st.integers(0, 10**6)),
    st.builds(lambda v: f": {v}", _sse_text),
    st.just("data"),
    st.just(""),
    _sse_text,
)


@st.composite
def sse_stream(draw) -> bytes:
    lines = draw(st.lists(_sse_line, max_size=25))
    ends = draw(
        st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=len(lines), max_size=len(lines))
    )
    bom = draw(st.booleans())
    body = "".join(line + end for line, end in zip(lines, ends, strict=True)).encode()
    return (b"\xef\xbb\xbf" if bom else b"") + body


def _parse_in_chunks(stream: bytes, cuts: list[int]) -> tuple[list, SseParser]:
    parser = SseParser()
    events = []
    previous = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        events.extend(parser.feed(stream[previous:cut]))
        previous = cut
    return events, parser


@budget(100)
@given(sse_stream(), st.lists(st.integers(0, 10_000), max_size=12))
def test_sse_any_chunking_of_a_valid_stream_gives_the_same_events(stream, cuts):
    whole, whole_parser = _parse_in_chunks(stream, [])
    chunked, chunked_parser = _parse_in_chunks(stream, cuts)
    assert chunked == whole
    assert chunked_parser.last_event_id == whole_parser.last_event_id
    assert chunked_parser.retry_ms == whole_parser.retry_ms
    assert chunked_parser.comments == whole_parser.comments


@budget(100)
@given(sse_stream())
def test_sse_byte_at_a_time_equals_whole(stream):
    whole, _ = _parse_in_chunks(stream, [])
    parser = SseParser()
    single = [event for i in range(len(stream)) for event in parser.feed(stream[i : i + 1])]
    assert single == whole


@budget(125)
@given(st.lists(st.binary(max_size=64), max_size=10))
def test_sse_arbitrary_bytes_raise_nothing_but_sse_protocol_error(chunks):
    parser = SseParser(max_line_bytes=100)
    try:
        for chunk in chunks:
            for event in parser.feed(chunk):
                assert isinstance(event.data, str)
    except SseProtocolError:
        pass


def test_sse_overlong_line_is_refused_not_buffered():
    parser = SseParser(max_line_bytes=1024)
    with pytest.raises(SseProtocolError):
        for _ in range(100):
            parser.feed(b"x" * 100)


# -- WebSocket messages --------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@budget(150)
@given(st.one_of(st.text(max_size=80), st.binary(max_size=80), _json.map(yaml.safe_dump)))
def test_ws_parse_message_raises_only_protocol_violation(frame):
    try:
        message = parse_message(frame)
    except ProtocolViolationError as exc:
        assert exc.code in (1003, 1007)
        return
    assert isinstance(message, dict)


@budget(75)
@given(st.dictionaries(st.text(max_size=6), _json, max_size=4))
def test_ws_parse_message_round_trips_json_objects(obj):
    import orjson  # noqa: PLC0415

    assert parse_message(orjson.dumps(obj).decode()) == obj


def test_ws_parse_message_lone_surrogate_and_deep_nesting_are_1007():
    for frame in ['{"a":"\ud800"}', "[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000]:
        with pytest.raises(ProtocolViolationError) as info:
            parse_message(frame)
        assert info.value.code == 1007


@budget(100)
@given(_json)
def test_ws_parse_since_accepts_only_null_or_non_negative_int(since):
    try:
        value = parse_since({"since": since})
    except InvalidSinceError:
        assert since is not None
        assert type(since) is not int or since < 0
        return
    assert value is None or (type(value) is int and value >= 0)


# -- thresholds ----------------------------------------------------------------------------

_threshold_parts = st.tuples(
    st.sampled_from(["ws echo", "rest", "*", "sse", "", "a:b", "grpc"]),
    st.sampled_from(["p99", "error_rate", "gaps", "lag_p99", "rps", "bogus", "P99"]),
    st.sampled_from(["<", "<=", "==", "!=", ">", ">=", "=", "<>", ""]),
    st.one_of(st.text(max_size=8), st.sampled_from(["50ms", "0.1%", "1", "-3s", "١٢ms", "5µs"])),
)


@budget(200)
@given(
    st.one_of(st.text(max_size=40), _threshold_parts.map(lambda p: f"{p[0]}:{p[1]}{p[2]}{p[3]}"))
)
def test_parse_threshold_raises_only_threshold_error(expression):
    try:
        threshold = parse_threshold(expression)
    except ThresholdError:
        return
    assert math.isfinite(threshold.value)
    # A parsed threshold parses again to the same thing (its text is canonical).
    assert parse_threshold(threshold.expression) == threshold


# -- units and rates -----------------------------------------------------------------------


@budget(150)
@given(
    st.one_of(
        st.text(max_size=12),
        st.builds(
            lambda n, u: f"{n}{u}", st.integers(0, 10**400), st.sampled_from(["", "s", "ms", "h"])
        ),
        st.builds(lambda n, u: f"{n}{u}", st.floats(), st.sampled_from(["", "s", "m", "us"])),
    )
)
def test_parse_duration_is_finite_non_negative_or_value_error(text):
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert math.isfinite(seconds) and seconds >= 0


@budget(150)
@given(st.integers(0, 10**9), st.sampled_from(["us", "ms", "s", "m", "h", ""]))
def test_parse_duration_round_trips_whole_numbers(n, unit):
    factor = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "": 1}[unit]
    assert parse_duration(f"{n}{unit}") == pytest.approx(n * factor)


@budget(150)
@given(
    st.one_of(
        st.text(max_size=12),
        st.builds(
            lambda n, u: f"{n}{u}", st.integers(0, 10**30), st.sampled_from(["", "KiB", "mb", "B"])
        ),
    )
)
def test_parse_size_is_an_int_or_value_error(text):
    try:
        size = parse_size(text)
    except ValueError:
        return
    assert isinstance(size, int) and size >= 0


@budget(150)
@given(
    st.one_of(
        st.text(max_size=12),
        st.floats(),
        st.integers(),
        st.builds(
            lambda n, u: f"{n}/{u}", st.floats(), st.sampled_from(["s", "m", "h", "min", "x", ""])
        ),
        st.sampled_from(["nan", "inf", "-inf", "nan/s", "1e999/s", "0/s"]),
    )
)
def test_parse_rate_is_finite_positive_or_value_error(value):
    try:
        rate = parse_rate(value)
    except ValueError:
        return
    assert math.isfinite(rate) and rate > 0


# -- scenarios -----------------------------------------------------------------------------

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(
        ["30s", "1m", "500/s", ".nan", ".inf", "2001-02-30", "4KiB", "nan", "ws echo:p99<50ms"]
    ),
)
_value = st.recursive(
    _scalar,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.one_of(st.text(max_size=8), st.integers(0, 3)), inner, max_size=3)
    ),
    max_leaves=8,
)
_keys = st.sampled_from(
    [
        "name",
        "description",
        "duration",
        "workers",
        "spawn_rate",
        "users",
        "feed",
        "rate",
        "reconnect",
        "thresholds",
    ]
)
_users = st.dictionaries(
    st.one_of(
        st.sampled_from(["rest", "poll_short", "poll_long", "sse", "ws", "grpc"]),
        st.integers(0, 2),
        st.text(max_size=4),
    ),
    st.one_of(st.integers(-1, 1000), _scalar),
    max_size=4,
)
_feed = st.dictionaries(
    st.one_of(st.sampled_from(["rate", "payload_size", "retention"]), st.integers(0, 2)),
    _scalar,
    max_size=3,
)


@st.composite
def scenario_document(draw) -> object:
    doc = draw(
        st.dictionaries(
            st.one_of(_keys, st.integers(0, 2), st.text(max_size=5)), _value, max_size=6
        )
    )
    if draw(st.booleans()):
        doc["name"] = draw(st.one_of(st.just("fuzz"), _scalar))
        doc["users"] = draw(_users)
        if draw(st.booleans()):
            doc["feed"] = draw(_feed)
        if draw(st.booleans()):
            doc["thresholds"] = draw(
                st.lists(st.one_of(st.text(max_size=12), st.just("ws echo:p99<50ms")), max_size=3)
            )
    return doc


_raw_yaml = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "name: x\nusers: {ws: 1}\nduration: 2001-02-30\n",
            "name: x\nusers: {ws: 1}\nspawn_rate: .nan\n",
            "name: x\nusers: {ws: 1}\nspawn_rate: .inf\n",
            "name: x\nusers: {ws: 1}\nfeed: {rate: .nan}\n",
            "name: x\nusers: {ws: 1}\nrate: .nan\n",
            "name: x\nusers: {ws: 1}\n1: 2\n",
            "name: x\nusers: {ws: 1}\nfeed: {1: 2, b: 3}\n",
            "name: x\nusers: {ws: 1, 3: 1}\n",
            "name: x\nusers: {ws: 1}\nduration: " + "9" * 400 + "\n",
            "[" * 300 + "]" * 300,
            "a: &a [*a]\n",
            "!!python/object:os.system ls\n",
            "- !!binary ZZZ\n",
            "? [a]\n: 1\n",
        ]
    ),
)


@budget(200)
@given(
    st.one_of(scenario_document().map(lambda d: yaml.safe_dump(d, allow_unicode=True)), _raw_yaml)
)
def test_parse_scenario_raises_only_scenario_error_for_any_yaml(text):
    try:
        scenario = parse_scenario(text, source="fuzz.yaml")
    except ScenarioError as exc:
        assert "\n" not in str(exc)
        return
    assert scenario.total_users > 0
    assert math.isfinite(scenario.duration) and scenario.duration > 0
    assert math.isfinite(scenario.spawn_rate) and math.isfinite(scenario.feed.rate)
    assert scenario.rate is None or (math.isfinite(scenario.rate) and scenario.rate > 0)


@budget(50)
@given(st.text(max_size=80))
def test_parse_scenario_raises_only_scenario_error_for_any_toml(text):
    with contextlib.suppress(ScenarioError):
        parse_scenario(text, source="fuzz.toml", toml=True)


# -- line protocol -------------------------------------------------------------------------

_lp_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\"),
    min_size=1,
    max_size=10,
)
_field_value = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
        max_size=10,
    ),
)


@budget(150)
@given(
    _lp_text.filter(lambda m: not m.startswith("#")),
    st.dictionaries(_lp_text, _lp_text, max_size=4),
    st.dictionaries(_lp_text, _field_value, min_size=1, max_size=4),
    st.one_of(st.none(), st.integers(0, 2**62)),
)
def test_line_protocol_parse_line_round_trips_encode(measurement, tags, fields, time_ns):
    point = Point(measurement, tags, fields, time_ns)
    assert parse_line(encode(point)) == point


@budget(200)
@given(st.text(max_size=60))
def test_line_protocol_parse_line_raises_only_value_error(line):
    try:
        point = parse_line(line)
    except ValueError:
        return
    assert point.measurement
