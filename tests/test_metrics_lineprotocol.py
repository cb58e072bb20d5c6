"""Line protocol: escaping that InfluxDB reads as meant, and parsing our own lines back."""

from __future__ import annotations

import pytest

from wirelab.metrics.lineprotocol import (
    Point,
    annotation_point,
    encode,
    encode_many,
    parse,
    parse_line,
    request_point,
    stream_point,
)
from wirelab.metrics.series import RequestSeries, StreamSeries


def test_spaces_commas_and_equals_in_tags_are_escaped_and_parse_back():
    point = Point(
        "requests",
        {"name": "rest POST /items,v=2 now", "run_id": "r 1", "scenario": "a=b"},
        {"count": 3},
        1_700_000_000_123_456_789,
    )
    line = encode(point)
    assert line == (
        "requests,name=rest\\ POST\\ /items\\,v\\=2\\ now,run_id=r\\ 1,scenario=a\\=b "
        "count=3i 1700000000123456789"
    )
    assert parse_line(line) == point


def test_quotes_and_backslashes_in_string_fields_are_escaped_and_parse_back():
    text = 'deploy "sse" C:\\path, a=b done'
    line = encode(Point("annotations", {"kind": "deploy start"}, {"text": text}, 5))
    assert line == 'annotations,kind=deploy\\ start text="deploy \\"sse\\" C:\\\\path, a=b done" 5'
    assert parse_line(line).fields["text"] == text


def test_measurement_names_escape_commas_and_spaces():
    line = encode(Point("my measure,x", {}, {"v": 1.5}, None))
    assert line == "my\\ measure\\,x v=1.5"
    assert parse_line(line) == Point("my measure,x", {}, {"v": 1.5}, None)


def test_values_that_line_protocol_cannot_carry_are_replaced_not_corrupting_the_line():
    point = Point(
        "annotations",
        {"name": "a\\b", "worker": "", "kind": "two\nlines"},
        {"text": "line one\nline two", "nan": float("nan"), "none": None, "ok": True},
        1,
    )
    line = encode(point)
    assert "\n" not in line
    back = parse_line(line)
    # No backslash survives in a tag (InfluxDB cannot read it back unambiguously), empty
    # tags and non-finite or missing fields are left out.
    assert back.tags == {"name": "a/b", "kind": "two lines"}
    assert back.fields == {"text": "line one line two", "ok": True}


def test_integers_floats_and_booleans_keep_their_types():
    point = Point("m", {}, {"i": 7, "f": 7.0, "neg": -2, "small": 1e-7, "b": False}, 9)
    line = encode(point)
    assert "i=7i" in line and "f=7.0" in line and "neg=-2i" in line and "b=false" in line
    assert parse_line(line) == point
    assert parse_line("m u=5u,t=t,F=F 1").fields == {"u": 5, "t": True, "F": False}


def test_a_point_without_fields_is_refused_and_skipped_in_bulk():
    with pytest.raises(ValueError):
        encode(Point("m", {"a": "b"}, {}, 1))
    assert encode_many([Point("m", {}, {}, 1), Point("m", {}, {"v": 1}, 1)]) == ["m v=1i 1"]


def test_parse_skips_blank_lines_and_comments_and_rejects_garbage():
    points = list(parse(["# a comment\n", "\n", "m v=1i 1\n", "m,t=x v=2i 2\n"]))
    assert [p.fields["v"] for p in points] == [1, 2]
    for bad in ("m", "m,t v=1", 'm v="open', "m v=1 notatime"):
        with pytest.raises(ValueError):
            parse_line(bad)


def test_request_and_stream_points_follow_the_schema():
    series = RequestSeries("rest", "rest GET /items")
    for ms in range(1, 101):
        series.record(ms * 1000.0, ok=ms % 10 != 0, size=10, service_us=ms * 500.0)
    series.dropped = 3
    point = request_point(series, {"run_id": "r", "scenario": "s"}, 42)
    assert point.tags == {
        "run_id": "r",
        "scenario": "s",
        "protocol": "rest",
        "name": "rest GET /items",
    }
    fields = point.fields
    assert (fields["count"], fields["failures"], fields["bytes"], fields["dropped"]) == (
        100,
        10,
        1000,
        3,
    )
    assert fields["p50"] == pytest.approx(50, rel=0.01)
    assert fields["p99"] == pytest.approx(99, rel=0.01)
    assert fields["max"] == 100.0
    assert fields["svc_p50"] == pytest.approx(25, rel=0.01)
    assert parse_line(encode(point)).fields["count"] == 100

    only_dropped = RequestSeries("rest", "rest GET /items", dropped=5)
    assert "p50" not in request_point(only_dropped, {}, 1).fields

    stream = StreamSeries("sse", "sse deliver", delivered=10, gaps=1, connected=7)
    stream.lag.record(2000.0)
    fields = stream_point(stream, {"run_id": "r"}, 1).fields
    assert fields["connected"] == 7 and fields["lag_p99"] == pytest.approx(2.0, rel=0.01)
    assert "reconnect_p50" not in fields

    annotation = annotation_point("storm", "500 clients", {"run_id": "r"}, 3, {"name": "sse"})
    assert annotation.tags == {"run_id": "r", "name": "sse", "kind": "storm"}
