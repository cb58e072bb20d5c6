"""The InfluxDB 2.x sink: the write API contract, and a real InfluxDB 2 when one is given."""

from __future__ import annotations

import os
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from influxdb_client import InfluxDBClient

from tests.test_sinks_buffer import LINES, RecordingServer
from wirelab.metrics.lineprotocol import parse
from wirelab.metrics.sinks import open_sink, parse_sink_url


def test_v2_sink_posts_line_protocol_to_the_write_api_with_org_bucket_precision_and_token():
    with RecordingServer() as server:
        sink = open_sink(
            f"influxdb2://127.0.0.1:{server.port}?org=lab&bucket=wirelab&batch=20",
            env={"WIRELAB_INFLUX_TOKEN": "s3cr3t-token"},
        )
        sink.write(LINES)
        assert sink.flush(timeout=5)
        sink.close(timeout=1)
    assert len(server.requests) == 2  # 25 points in batches of 20
    for request in server.requests:
        url = urlsplit(request.path)
        assert request.method == "POST" and url.path == "/api/v2/write"
        assert parse_qs(url.query) == {"org": ["lab"], "bucket": ["wirelab"], "precision": ["ns"]}
        assert request.headers["authorization"] == "Token s3cr3t-token"
        assert request.headers["content-type"].startswith("text/plain")
    body = b"".join(request.body for request in server.requests).decode()
    assert list(parse(body.splitlines())) == list(parse(LINES))
    assert sink.stats().written == 25 and sink.stats().dropped == 0


def test_v2_sink_retries_server_errors_and_drops_rejected_batches():
    with RecordingServer(statuses=[503, 422]) as server:
        sink = open_sink(
            f"influx2+http://127.0.0.1:{server.port}?org=lab&bucket=wirelab&batch=10",
            env={"WIRELAB_INFLUX_TOKEN": "t"},
        )
        sink.write(LINES)
        assert sink.flush(timeout=5)
        sink.close(timeout=1)
    stats = sink.stats()
    # 503: retried; 422 (unprocessable): that batch of 10 dropped; the rest written.
    assert stats.retries == 1 and stats.dropped_rejected == 10 and stats.written == 15
    assert len(server.requests) == 4


def test_v2_https_urls_select_tls():
    assert parse_sink_url("influx2+https://influx.example:443?org=o&bucket=b").base_url == (
        "https://influx.example:443"
    )


def test_v2_sink_against_a_real_influxdb_2_when_one_is_given():
    """Writes and reads back through a real InfluxDB 2.x/3.x.

    Debian has no InfluxDB 2 package, so no server can be started here: this test needs
    ``WIRELAB_INFLUX2_URL`` (``influxdb2://host:8086?org=O&bucket=B``) and
    ``WIRELAB_INFLUX_TOKEN`` and is reported as not applicable (skipped) without them. That
    is the one skip this project allows.
    """
    url = os.environ.get("WIRELAB_INFLUX2_URL")
    if not url:
        pytest.skip("not applicable: set WIRELAB_INFLUX2_URL to test against a real InfluxDB 2")
    spec = parse_sink_url(url)
    run_id = f"test-{uuid.uuid4().hex[:12]}"
    now = time.time_ns()
    lines = [f"requests,run_id={run_id},name=x count={i}i {now + i}" for i in range(10)]
    sink = open_sink(url)
    sink.write(lines)
    assert sink.flush(timeout=15), sink.stats()
    sink.close(timeout=1)
    assert sink.stats().written == 10 and sink.stats().dropped == 0
    with InfluxDBClient(
        url=spec.base_url, token=os.environ["WIRELAB_INFLUX_TOKEN"], org=spec.org
    ) as client:
        query = (
            f'from(bucket: "{spec.bucket}") |> range(start: -1h) '
            f'|> filter(fn: (r) => r._measurement == "requests" and r.run_id == "{run_id}") '
            '|> filter(fn: (r) => r._field == "count") |> sum()'
        )
        tables = client.query_api().query(query)
        assert [record.get_value() for table in tables for record in table.records] == [45]
