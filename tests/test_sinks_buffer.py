"""The buffered network sink: retry while the server is down, count whatever is lost.

:class:`RecordingServer` (a real HTTP server on a loopback socket that records requests
and answers with scripted statuses) is shared with the other sink tests.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.test_metrics_plugin import run_python
from wirelab.metrics.sinks import open_sink
from wirelab.processes import free_port

LINES = [f"m,run_id=r v={i}i {1_700_000_000_000_000_000 + i}" for i in range(25)]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class RecordingServer:
    """Answers every request with the next scripted status (then ``default``), recording it."""

    def __init__(self, statuses: list[int] | None = None, default: int = 204) -> None:
        self.requests: list[Recorded] = []
        self.statuses = list(statuses or [])
        self.default = default
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server.lock:
                    server.requests.append(
                        Recorded(
                            "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                        )
                    )
                    status = server.statuses.pop(0) if server.statuses else server.default
                payload = b'{"error":"scripted failure","message":"scripted failure"}'
                self.send_response(status)
                if status == 204:
                    self.end_headers()
                    return
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_dead_server_and_a_tiny_buffer_count_every_point_dropped(tmp_path):
    sink = open_sink(f"influxdb://127.0.0.1:{free_port()}/db?buffer=10&batch=5")
    sink.write(LINES[:10])
    sink.write(LINES[10:25])  # 15 more than the buffer holds
    assert not sink.flush(timeout=0.5)
    stats = sink.stats()
    assert stats.dropped_overflow == 15 and stats.buffered == 10
    assert stats.retries >= 1 and len(stats.outages) == 1 and stats.outages[0].end is None
    sink.close(timeout=0.2)
    stats = sink.stats()
    assert stats.dropped_unsent == 10 and stats.dropped == 25 and stats.written == 0
    assert stats.outages[0].end is not None  # closed at the end of the run


def test_the_buffer_overflow_is_reported_in_the_sink_series_and_metrics_json(tmp_path):
    run_python(
        tmp_path,
        f"""
        from wirelab.metrics.plugin import PluginConfig, RunMetrics
        from wirelab.metrics.results import load_results

        sink = "influxdb://127.0.0.1:{free_port()}/db?buffer=3"
        run = RunMetrics(PluginConfig(run_id="r", report_dir=tmp, sinks=(sink,), flush_timeout=0.3))
        for _ in range(4):
            run.tick()  # 3 points per tick: users and two sink points
        summary = run.finish()

        [influx] = [s for s in summary["sinks"] if s["kind"] == "influx_v1"]
        assert influx["dropped"] == 15 and influx["dropped_overflow"] == 12, influx
        assert influx["dropped_unsent"] == 3 and summary["dropped_points"] == 15
        results = load_results(tmp)
        assert results.dropped_points == 15 and len(results.outages) == 1
        sink_points = results.series("sink", name=influx["name"])
        assert [p.fields["dropped"] for p in sink_points][-1] > 0
        """,
    )


def test_a_server_that_fails_then_recovers_gets_every_point_and_the_outage_is_recorded():
    with RecordingServer(statuses=[503, 500, 429]) as server:
        sink = open_sink(f"influxdb://127.0.0.1:{server.port}/db?batch=10")
        started = time.time()
        sink.write(LINES)
        assert sink.flush(timeout=10)
        sink.close(timeout=1)
    stats = sink.stats()
    assert stats.written == 25 and stats.dropped == 0 and stats.retries == 3
    [outage] = stats.outages
    assert started <= outage.start <= outage.end and outage.attempts == 3
    assert "HTTP 503" in outage.error
    bodies = [r.body.decode() for r in server.requests[3:]]
    assert "".join(bodies).splitlines() == LINES  # in order, each point once


def test_a_rejected_batch_is_dropped_and_counted_not_retried_forever():
    with RecordingServer(statuses=[400], default=204) as server:
        sink = open_sink(f"influxdb://127.0.0.1:{server.port}/db?batch=10")
        sink.write(LINES)
        assert sink.flush(timeout=5)
        sink.close(timeout=1)
    stats = sink.stats()
    assert stats.dropped_rejected == 10 and stats.written == 15 and stats.retries == 0
    assert len(server.requests) == 3
    assert stats.outages == []


def test_influx_v1_credentials_come_from_the_environment_as_basic_auth():
    with RecordingServer() as server:
        sink = open_sink(
            f"http://127.0.0.1:{server.port}/proxy?db=lab&rp=week",
            env={"WIRELAB_INFLUX_USER": "writer", "WIRELAB_INFLUX_PASSWORD": "pw"},
        )
        sink.write(LINES[:2])
        assert sink.flush(timeout=5)
        sink.close(timeout=1)
    [request] = server.requests
    assert request.path.startswith("/proxy/write?")
    assert sorted(request.path.split("?")[1].split("&")) == ["db=lab", "precision=ns", "rp=week"]
    assert request.headers["authorization"] == "Basic d3JpdGVyOnB3"  # writer:pw
    assert request.body.decode().splitlines() == LINES[:2]


def test_sink_urls_with_credentials_or_unknown_options_are_refused():
    for url, message in [
        ("influxdb://writer:pw@h:8086/db", "credentials"),
        ("http://h:8086?db=d&u=writer&p=pw", "must not be in the URL"),
        ("influxdb2://h:8086?org=o&bucket=b&token=t", "must not be in the URL"),
        ("influxdb://h:8086/db?buffr=5", "unknown option"),
        ("influxdb2://h:8086?bucket=b", "org and bucket"),
        ("http://h:8086/", "name one database"),
        ("redis://h", "unknown scheme"),
    ]:
        with pytest.raises(ValueError, match=message) as error:
            open_sink(url)
        assert "pw" not in str(error.value) and "=t" not in str(error.value)
