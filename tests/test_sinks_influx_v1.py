"""The InfluxDB 1.x sink against a real influxd: escaping as influxd reads it, rejections."""

from __future__ import annotations

from wirelab.metrics.lineprotocol import Point, encode
from wirelab.metrics.sinks import open_sink


def test_names_with_spaces_commas_equals_and_quotes_survive_a_trip_through_influxd(
    influxdb_server, influxdb_database
):
    name = 'rest POST /items,v=2 "quoted"'
    text = 'deploy "sse", step=1 \\ done'
    points = [
        Point("requests", {"run_id": "r x", "name": name}, {"count": 7, "p99": 1.5}, 1_000_000_001),
        Point(
            "annotations", {"run_id": "r x", "kind": "deploy start"}, {"text": text}, 1_000_000_002
        ),
    ]
    sink = open_sink(
        f"influxdb://{influxdb_server.host}:{influxdb_server.port}/{influxdb_database}"
    )
    sink.write([encode(point) for point in points])
    assert sink.flush(timeout=10)
    sink.close(timeout=1)
    assert sink.stats().written == 2 and sink.stats().dropped == 0

    result = influxdb_server.query(
        'SELECT "count", "p99", "name" FROM "requests" WHERE "run_id" = \'r x\'',
        database=influxdb_database,
    )
    [series] = result["results"][0]["series"]
    assert series["values"] == [["1970-01-01T00:00:01.000000001Z", 7, 1.5, name]]
    result = influxdb_server.query(
        'SELECT "text", "kind" FROM "annotations"', database=influxdb_database
    )
    [series] = result["results"][0]["series"]
    assert series["values"][0][1:] == [text, "deploy start"]


def test_writing_to_a_database_that_does_not_exist_is_counted_dropped_not_retried(influxdb_server):
    sink = open_sink(f"influxdb://{influxdb_server.host}:{influxdb_server.port}/no_such_database")
    sink.write(["m v=1i 1", "m v=2i 2"])
    assert sink.flush(timeout=10)
    sink.close(timeout=1)
    stats = sink.stats()
    assert stats.dropped_rejected == 2 and stats.retries == 0 and stats.written == 0
    assert "database not found" in stats.last_error
