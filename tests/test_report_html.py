"""``report.html``: its charts are the dashboards' time-series panels, and they really draw.

The last test renders the report of a real distributed run in headless Chromium and reads
the screenshot's pixels inside every chart's plot area (located by Chromium's own layout).
"""

from __future__ import annotations

import json
import re
import struct
import sys
import time
import zlib
from html import unescape
from pathlib import Path

import pytest

from dashboards.build import dashboards as dashboard_models
from tests.fixtures import require_binary
from wirelab.metrics.lineprotocol import Point
from wirelab.metrics.results import RunResults
from wirelab.processes import ManagedProcess
from wirelab.report import html
from wirelab.report.html import (
    CHART_SECTIONS,
    REPORT_ONLY_CHARTS,
    chart_series,
    render_report,
)
from wirelab.report.svg import line_chart

S = 1_000_000_000  # ns


def summary(**overrides) -> dict:
    base = {
        "run_id": "test-run",
        "scenario": "smoke",
        "exit_code": 0,
        "duration_s": 3.0,
        "model": "closed",
        "finished_at": "2026-01-01T00:00:03Z",
        "thresholds": [],
        "incomplete": [],
        "workers": {"seen": ["w1"], "lost": []},
        "sinks": [],
        "requests": [],
        "streams": [],
        "annotations": [],
    }
    return {**base, **overrides}


def results(points: list[Point], annotations: list[dict] | None = None) -> RunResults:
    return RunResults(
        run_dir=Path("."), interval_s=1.0, points=points, annotations=annotations or []
    )


def at(second: int, measurement: str, tags: dict, **fields) -> Point:
    return Point(measurement, {"run_id": "r", **tags}, fields, second * S)


def chart(title: str):
    return next(c for _, charts in CHART_SECTIONS for c in charts if c.title == title)


def test_report_charts_are_the_dashboards_time_series_panels_in_the_same_order():
    dashboards = {
        model.title.removeprefix("wirelab · "): model for model in dashboard_models().values()
    }
    assert [section for section, _ in CHART_SECTIONS] == list(dashboards)
    for section, charts in CHART_SECTIONS:
        panels = [p.title for p in dashboards[section].panels if p.kind == "timeseries"]
        drawn = [c.title for c in charts if c.title not in REPORT_ONLY_CHARTS]
        assert drawn == panels, section


def test_chart_lines_are_aggregated_per_interval_as_the_panels_queries_do():
    points = [
        at(1, "requests", {"protocol": "ws", "name": "ws echo"}, count=3, p99=4.0),
        at(1, "requests", {"protocol": "ws", "name": "ws ping"}, count=5, p99=9.0),
        at(2, "requests", {"protocol": "ws", "name": "ws echo"}, count=2, p99=1.0),
        at(1, "streams", {"protocol": "poll", "name": "poll short"}, connected=2, delivered=10),
        at(1, "streams", {"protocol": "poll", "name": "poll long"}, connected=3, delivered=20),
        at(1, "worker_health", {"worker": "vm_0123456789abcdef"}, cpu_percent=42.0),
    ]
    run = results(points)
    # Counters: the interval's sum over its length; percentiles: the worst series.
    assert chart_series(chart("Throughput per protocol"), run) == {"ws": [(0.0, 8.0), (1.0, 2.0)]}
    assert chart_series(chart("Latency p99 per protocol"), run) == {
        "ws p99": [(0.0, 9.0), (1.0, 1.0)]
    }
    # A gauge kept per stream is added up across the protocol's streams.
    assert chart_series(chart("Connected clients per protocol"), run) == {"poll": [(0.0, 5.0)]}
    assert set(chart_series(chart("Delivered events per stream"), run)) == {
        "poll short",
        "poll long",
    }
    # Worker CPU carries the saturation line at 100 % of one core.
    cpu = chart_series(chart("Worker CPU (% of one core)"), run)
    assert cpu["89abcdef"] == [(0.0, 42.0)]
    assert {y for _, y in cpu["saturated (100%)"]} == {100.0}


def test_deploy_section_only_appears_for_runs_that_acted_on_their_targets():
    plain = [
        at(1, "streams", {"protocol": "ws", "name": "ws deliver"}, delivered=1, connected=1),
        at(1, "users", {}, users=1),
    ]
    page = render_report(summary(), results(plain))
    assert "<h3>Run overview</h3>" in page and "<h3>Streams</h3>" in page
    assert "Deploy &amp; storms" not in page
    deploy = [
        *plain,
        at(1, "targets", {"protocol": "ws", "replica": "ws-1"}, active_connections=4, accepted=2),
        at(2, "targets", {"protocol": "ws", "replica": "ws-2"}, active_connections=3, accepted=1),
    ]
    notes = [{"at": 1.5, "time_ns": int(1.5 * S), "kind": "deploy_start", "text": "deploy ws"}]
    page = render_report(summary(), results(deploy, notes))
    assert "<h3>Deploy &amp; storms</h3>" in page
    assert 'aria-label="Connections per target replica"' in page
    assert "deploy_start" in page  # the action is marked on the charts
    # A chart shared by two dashboards is drawn once, in the first.
    assert page.count('aria-label="Connected clients per protocol"') == 1


def test_charts_without_data_are_left_out():
    page = render_report(summary(), results([at(1, "users", {}, users=3)]))
    assert 'aria-label="Users"' in page
    assert "Throughput per protocol" not in page and "no data" not in page


# -- the real thing, in a real browser ---------------------------------------------------------


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced RGB or RGBA PNG.

    No imaging library is needed: inflate the IDAT stream with zlib and undo each row's
    filter. "Up" rows, most of a screenshot, add two rows bytewise in one big-integer
    operation (the carry out of each byte masked away); the other filters go byte by byte.
    """
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, chunks, header = 8, [], ()
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    step = 4 if colour == 6 else 3
    stride = width * step
    raw = zlib.decompress(b"".join(chunks))
    low = int.from_bytes(b"\x7f" * stride, "big")
    high = int.from_bytes(b"\x80" * stride, "big")
    previous, rows = bytes(stride), []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], raw[start + 1 : start + 1 + stride]
        if kind == 0:
            row = line
        elif kind == 2:  # up: bytewise a + b without carries between bytes
            a, b = int.from_bytes(line, "big"), int.from_bytes(previous, "big")
            row = (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(stride, "big")
        else:
            out = bytearray(line)
            for i in range(stride):
                left = out[i - step] if i >= step else 0
                up = previous[i]
                if kind == 1:
                    out[i] = (out[i] + left) & 0xFF
                elif kind == 3:
                    out[i] = (out[i] + ((left + up) >> 1)) & 0xFF
                else:  # Paeth
                    corner = previous[i - step] if i >= step else 0
                    pa, pb = abs(up - corner), abs(left - corner)
                    pc = abs(up + left - 2 * corner)
                    guess = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                    out[i] = (out[i] + guess) & 0xFF
            row = bytes(out)
        rows.append(row)
        previous = row
    if step == 4:
        rows = [bytes(b for i, b in enumerate(row) if i % 4 != 3) for row in rows]
    return width, height, rows


def plotted_columns(rows: list[bytes], box: tuple[int, int, int, int]) -> int:
    """How many pixel columns of ``box`` (x, y, w, h) hold a plotted line: a saturated colour
    or black (the palette's last colour). The plot area's grid (#e5e5e5), axes (#999) and
    "no data" text (#888) are light or mid grey; the background is white."""
    x0, y0, w, h = box
    columns = set()
    for y in range(y0, y0 + h):
        row = rows[y]
        for x in range(x0, x0 + w):
            r, g, b = row[3 * x : 3 * x + 3]
            if max(r, g, b) - min(r, g, b) > 60 or max(r, g, b) < 40:
                columns.add(x)
    return len(columns)


LAYOUT_SCRIPT = """<script>
addEventListener('load', () => {
  const charts = [...document.querySelectorAll('svg.chart')].map(svg => {
    const r = svg.getBoundingClientRect();
    return [svg.getAttribute('aria-label'), r.left + scrollX, r.top + scrollY, r.width, r.height];
  });
  const out = document.createElement('pre');
  out.id = 'layout';
  out.textContent = JSON.stringify({charts, height: document.documentElement.scrollHeight});
  document.body.appendChild(out);
});
</script>"""

WINDOW_WIDTH = 1400


def chromium(tmp_path: Path, *args: str, log: str) -> str:
    """Run headless Chromium to the end (bounded); its output (stdout and stderr) as text."""
    process = ManagedProcess(
        [
            require_binary("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--hide-scrollbars",
            "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'chromium'}",
            *args,
        ],
        name="chromium",
        log_path=tmp_path / log,
    )  # fmt: skip
    with process:
        deadline = time.monotonic() + 60
        while process.alive and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not process.alive, f"chromium did not finish\n{process.log_tail()}"
    return (tmp_path / log).read_text(errors="replace")


def test_the_pixel_check_tells_an_empty_chart_from_a_plotted_one(tmp_path):
    """The screenshot check below would pass a report of blank charts if it could not."""
    empty = line_chart({}, title="empty")
    flat = line_chart({"zero": [(0.0, 0.0), (5.0, 0.0)]}, title="flat zero line")
    page = tmp_path / "charts.html"
    page.write_text(
        f"<!doctype html><style>body{{margin:0}}svg{{display:block}}</style>{empty}{flat}"
    )
    shot = tmp_path / "charts.png"
    chromium(tmp_path, "--window-size=640,520", f"--screenshot={shot}", page.as_uri(), log="c")
    _, _, rows = read_png(shot)
    # Two 240 px high charts, one above the other.
    assert plotted_columns(rows, (57, 28, 550, 178)) == 0
    assert plotted_columns(rows, (57, 240 + 28, 550, 178)) > 500


@pytest.fixture(scope="module")
def real_report(tmp_path_factory) -> Path:
    """report.html of a short real distributed run (smoke, 2 workers, file sink only)."""
    report_dir = tmp_path_factory.mktemp("report-run")
    process = ManagedProcess(
        [
            sys.executable, "-m", "wirelab", "run", "--scenario", "smoke", "--duration", "6s",
            "--workers", "2", "--report-dir", str(report_dir), "--no-progress",
        ],
        name="wirelab-run",
        log_path=report_dir / "run.log",
    )  # fmt: skip
    with process:
        deadline = time.monotonic() + 120
        while process.alive and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.returncode == 0, process.log_tail(40)
    [page] = report_dir.glob("*/report.html")
    return page


def test_report_of_a_real_run_renders_in_chromium_with_every_chart_plotted(real_report, tmp_path):
    page = real_report.read_text()
    expected = [unescape(t) for t in re.findall(r'class="chart"[^>]*aria-label="([^"]*)"', page)]
    # Every protocol's figures and the generator's made it into the report.
    for title in (
        "Throughput per protocol",
        "Events delivered per protocol",
        "Worker CPU (% of one core)",
    ):
        assert title in expected
    # Chromium's own layout says where each chart is: a copy of the page reports it.
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", LAYOUT_SCRIPT + "</body>"))
    dom = chromium(
        tmp_path, f"--window-size={WINDOW_WIDTH},1000", "--dump-dom", probe.as_uri(), log="dom"
    )
    found = re.search(r'<pre id="layout">(.*?)</pre>', dom, re.DOTALL)
    assert found, dom[-2000:]
    layout = json.loads(unescape(found.group(1)))
    charts = {label: box for label, *box in layout["charts"]}
    assert list(charts) == expected
    shot = tmp_path / "report.png"
    chromium(
        tmp_path,
        f"--window-size={WINDOW_WIDTH},{int(layout['height']) + 10}",
        f"--screenshot={shot}",
        real_report.as_uri(),
        log="screenshot.log",
    )
    width, height, rows = read_png(shot)
    assert width == WINDOW_WIDTH and height >= layout["height"]
    for label, (left, top, chart_width, chart_height) in charts.items():
        # The plot area inside the chart's margins (title above, legend below).
        plot = (int(left) + 57, int(top) + 28, int(chart_width) - 70, int(chart_height) - 62)
        drawn = plotted_columns(rows, plot)
        assert drawn >= plot[2] * 0.6, f"{label!r}: a line spans only {drawn} of {plot[2]} px"


def test_html_module_has_no_grafana_dependency():
    # The report must render where only the wirelab package is installed.
    source = Path(html.__file__).read_text()
    assert "import dashboards" not in source and "from dashboards" not in source
