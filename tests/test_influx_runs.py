"""Real distributed Locust runs (a master and two workers) streaming into a real influxd."""

from __future__ import annotations

import time

from tests.test_metrics_plugin import assert_totals_match_fired, start_locust
from wirelab.metrics.lineprotocol import parse

# One field that every point of each measurement has, to count points with InfluxQL.
COUNTED_FIELD = {
    "requests": "count",
    "streams": "delivered",
    "users": "users",
    "worker_health": "rss_bytes",
    "sink": "buffered",
    "annotations": "text",
}


def _rows(result: dict) -> list[dict]:
    """InfluxQL result series as ``{"tags": ..., "values": [...]}`` rows."""
    rows = []
    for statement in result.get("results", []):
        for series in statement.get("series", []):
            rows.append({"tags": series.get("tags", {}), "values": series["values"]})
    return rows


def influx_points_per_measurement(server, database: str, run_id: str) -> dict[str, int]:
    counts = {}
    for measurement, field in COUNTED_FIELD.items():
        result = server.query(
            f'SELECT count("{field}") FROM "{measurement}" WHERE "run_id" = \'{run_id}\'',
            database=database,
        )
        rows = _rows(result)
        counts[measurement] = rows[0]["values"][0][1] if rows else 0
    return counts


def file_points_per_measurement(run) -> dict[str, int]:
    counts = dict.fromkeys(COUNTED_FIELD, 0)
    with (run.report_dir / "timeseries.lp").open() as lines:
        for point in parse(lines):
            counts[point.measurement] += 1
    return counts


def test_distributed_run_streams_to_influxd_and_influxql_sums_equal_metrics_json(
    tmp_path, influxdb_server, influxdb_database
):
    sink = f"influxdb://{influxdb_server.host}:{influxdb_server.port}/{influxdb_database}"
    run = start_locust(tmp_path, workers=2, users=4, run_time="6s", sinks=sink)
    assert run.wait(timeout=60) == 0, run.master.log_tail()

    metrics = assert_totals_match_fired(run)
    assert len(metrics["workers"]["seen"]) == 2 and metrics["workers"]["lost"] == []
    totals = {series["n"]: series for series in metrics["totals"]["requests"]}

    result = influxdb_server.query(
        f'SELECT sum("count"), sum("failures") FROM "requests" WHERE "run_id" = \'{run.run_id}\' '
        'GROUP BY "name"',
        database=influxdb_database,
    )
    influx = {row["tags"]["name"]: row["values"][0][1:] for row in _rows(result)}
    assert influx == {name: [s["count"], s["failures"]] for name, s in totals.items()}

    result = influxdb_server.query(
        f'SELECT sum("delivered") FROM "streams" WHERE "run_id" = \'{run.run_id}\'',
        database=influxdb_database,
    )
    [stream] = metrics["totals"]["streams"]
    assert _rows(result)[0]["values"][0][1] == stream["delivered"]

    # Both workers sent their health; every point of the file reached influxd.
    result = influxdb_server.query(
        'SHOW TAG VALUES FROM "worker_health" WITH KEY = "worker" '
        f"WHERE \"run_id\" = '{run.run_id}'",
        database=influxdb_database,
    )
    assert {value for _, value in _rows(result)[0]["values"]} == set(metrics["workers"]["seen"])
    assert influx_points_per_measurement(
        influxdb_server, influxdb_database, run.run_id
    ) == file_points_per_measurement(run)
    [influx_sink] = [s for s in metrics["sinks"] if s["kind"] == "influx_v1"]
    assert influx_sink["dropped"] == 0 and influx_sink["outages"] == []
    assert metrics["dropped_points"] == 0


def test_influxd_down_for_10s_mid_run_loses_no_point_and_the_outage_is_recorded(
    tmp_path, influxdb_server, influxdb_database
):
    sink = f"influxdb://{influxdb_server.host}:{influxdb_server.port}/{influxdb_database}"
    run = start_locust(tmp_path, workers=2, users=2, run_time="22s", sinks=sink)
    try:
        # Wait until the run's first points have arrived, then take influxd away for 10 s.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if influx_points_per_measurement(influxdb_server, influxdb_database, run.run_id)[
                "users"
            ]:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("no point reached influxd\n" + run.master.log_tail())
        stopped_at = time.time()
        influxdb_server.stop()
        time.sleep(10)
        influxdb_server.start()
        restarted_at = time.time()
    except BaseException:
        run.stop()
        raise
    assert run.wait(timeout=60) == 0, run.master.log_tail()

    metrics = assert_totals_match_fired(run)
    [influx_sink] = [s for s in metrics["sinks"] if s["kind"] == "influx_v1"]
    assert influx_sink["dropped"] == 0 and metrics["dropped_points"] == 0
    assert influx_sink["retries"] > 0 and influx_sink["buffered"] == 0
    [outage] = influx_sink["outages"]
    assert stopped_at - 1 <= outage["start"] <= stopped_at + 3
    assert restarted_at <= outage["end"] <= restarted_at + 5
    # Every point of the run (those buffered during the outage included) is in influxd.
    counts = influx_points_per_measurement(influxdb_server, influxdb_database, run.run_id)
    assert counts == file_points_per_measurement(run)
    assert counts["users"] >= 20
    # The file sink recorded the InfluxDB sink's trouble as it happened.
    result = influxdb_server.query(
        f'SELECT max("buffered") FROM "sink" WHERE "run_id" = \'{run.run_id}\' '
        'AND "name" =~ /^influxdb/',
        database=influxdb_database,
    )
    assert _rows(result)[0]["values"][0][1] > 0
