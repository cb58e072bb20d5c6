"""The live view and the report in Debian's headless Chromium, during and after a real run.

``wirelab up`` (Locust master + 2 worker processes, the replicated lab with one replica per
protocol behind HAProxy, a reconnect storm at 4 s) with its web UI beyond loopback, so the
login is on. The browser is refused without it, logs in through Locust's own form, starts the
run from its session, watches the view refresh and the storm land on the timeline, and reads
the figures the view shows at the end; the same test's ``summary.json`` (which ``wirelab up``
builds from the master's ``metrics.json`` with the code ``wirelab run`` uses, as soon as the
test stops) must say the same. The report of
that run then renders without a console error.

Screenshots go to the test's tmp dir; with ``WIRELAB_SCREENSHOT_DIR`` set (``docs/images``)
they are also copied there: that is how the pictures in ``docs/live-view.md`` are made.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import Browser
from tests.test_web_login import wirelab_up_behind_login
from wirelab.report.glance import group_thresholds

USER, PASSWORD = "operator", "live-view-pw-42"
RUN_TIME_S = 10
SCENARIO = """\
name: live-view
description: the live view's browser test; every protocol, one storm
duration: 10s
workers: 2
spawn_rate: 50
replicas: 1
users: {rest_echo: 1, poll_short: 1, poll_long: 1, sse: 2, ws: 2, grpc_feed: 1}
feed: {rate: 20}
reconnect: full_jitter:base=0.2,cap=1
actions:
  - {at: 4s, do: drop_connections, service: all}
thresholds:
  - "*:error_rate<50%"
  - "*:duplicates==0"
  - "sse:lost==0"
  - "rest POST /echo:p50<1us"
"""

#: What the page shows, read from its tables: {table: {row key: {column: text}}}.
READ_TABLES = """(() => {
  const rows = (id) => document.querySelectorAll(`#${id} tbody tr[data-key]`);
  const read = (id) => Object.fromEntries([...rows(id)]
    .map((tr) => [tr.dataset.key, Object.fromEntries([...tr.querySelectorAll("td[data-col]")]
      .map((td) => [td.dataset.col, td.textContent])) ]));
  return { streams: read("streams"), requests: read("requests"), thresholds: read("thresholds"),
           workers: read("workers"), polls: Number(document.body.dataset.polls),
           state: document.body.dataset.state || "" };
})()"""


def number(text: str) -> float:
    return float(text.replace(",", ""))


def keep(shot: Path) -> None:
    target = os.environ.get("WIRELAB_SCREENSHOT_DIR")
    if target:
        shutil.copy(shot, Path(target) / shot.name)


def assert_png(shot: Path) -> None:
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, shot


@pytest.fixture
def lab_up(tmp_path: Path):
    """``wirelab up`` on all interfaces (login on); yields (base URL, run dir, scenario file,
    the process)."""
    scenario = tmp_path / "live-view.yaml"
    scenario.write_text(SCENARIO)
    with wirelab_up_behind_login(
        tmp_path, "--scenario", str(scenario), user=USER, password=PASSWORD, timeout=90
    ) as (process, base):
        found = re.search(r"logs and results: (\S+)", (tmp_path / "up.log").read_text())
        assert found, process.log_tail()
        yield base, Path(found.group(1)), scenario, process


def test_live_view_during_a_real_run_shows_what_summary_json_says_at_the_end(lab_up, tmp_path):
    base, run_dir, _, up = lab_up
    # Closed without the login: the figures and the page alike.
    with httpx.Client(base_url=base, timeout=5, follow_redirects=False) as anonymous:
        for path in ("/wirelab/", "/wirelab/live.json"):
            response = anonymous.get(path)
            assert response.status_code == 302, path
            assert urllib.parse.urlsplit(response.headers["location"]).path == "/login"

    with Browser(tmp_path) as browser:
        landed = browser.navigate(f"{base}/wirelab/")
        assert urllib.parse.urlsplit(landed).path == "/login"
        # Locust's own login form, filled and sent as a person would.
        browser.wait_for("document.querySelector('input[name=password]') !== null")
        browser.evaluate(
            f"""(() => {{
              document.querySelector('input[name=username]').value = {json.dumps(USER)};
              document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)};
              document.querySelector('form').requestSubmit();
            }})()"""
        )
        # Back on the page that asked for the login, and it is polling.
        browser.wait_for("location.pathname === '/wirelab/' && document.body.dataset.polls > 0")
        errors_before = len(browser.console_errors)
        browser.wait_for(
            "fetch('live.json').then((r) => r.json()).then((d) => d.run.workers === 2)", 60
        )
        started = browser.evaluate(
            "fetch('../swarm', {method: 'POST', body: new URLSearchParams("
            f"{{user_count: 8, spawn_rate: 50, run_time: '{RUN_TIME_S}s'}})}})"
            ".then((r) => r.status)"
        )
        assert started == 200

        # It refreshes by itself: new polls, and the figures move.
        browser.wait_for(
            'Number((document.querySelector(\'#streams tr[data-key="sse deliver"] '
            "td[data-col=delivered]') || {}).textContent || 0) > 0",
            60,
        )
        first = browser.evaluate(READ_TABLES)
        browser.wait_for(
            f"document.body.dataset.polls > {first['polls']} && Number(document.querySelector("
            "'#streams tr[data-key=\"sse deliver\"] td[data-col=delivered]').textContent"
            f".replace(/,/g, '')) > {number(first['streams']['sse deliver']['delivered'])}",
            30,
        )
        # The storm lands on the timeline and in the list of events as it happens.
        browser.wait_for("document.querySelector('#timeline [data-kind=storm]') !== null", 60)
        assert browser.evaluate("document.querySelector('#events li[data-kind=storm]') !== null")
        view_shot = browser.screenshot(tmp_path / "live-view.png")

        # The run ends by its run time; then the figures stop moving.
        browser.wait_for("document.body.dataset.state === 'stopped'", RUN_TIME_S + 60)
        shown = browser.evaluate(READ_TABLES)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            polls = shown["polls"]
            browser.wait_for(f"document.body.dataset.polls > {polls + 2}", 30)
            again = browser.evaluate(READ_TABLES)
            settled = {k: v for k, v in again.items() if k != "polls"} == {
                k: v for k, v in shown.items() if k != "polls"
            }
            shown = again
            if settled:
                break
        else:
            pytest.fail("the view's figures kept changing after the run stopped")
        raw = browser.evaluate("fetch('live.json').then((r) => r.json())")
        assert browser.console_errors[errors_before:] == []

        # Locust's own UI carries wirelab's tables in its tabs.
        browser.navigate(f"{base}/?tab=wirelab-streams")
        browser.wait_for("document.body.innerText.includes('sse deliver')", 30)
        assert "lag p99 ms (exact)" in browser.evaluate("document.body.innerText")
        tab_shot = browser.screenshot(tmp_path / "locust-wirelab-tab.png", full_page=False)

        # The test's report, written by `wirelab up` as soon as the test stopped.
        up.wait_ready(lambda: len(list(run_dir.glob("*/summary.json"))) == 1, 60)
        (summary_file,) = run_dir.glob("*/summary.json")
        summary = json.loads(summary_file.read_text())

        assert_same_figures(shown, raw, summary)

        # The view lists it and links to it: the report, served behind the same login.
        errors_before = len(browser.console_errors)
        browser.navigate(f"{base}/wirelab/")
        link = f"#finished li[data-run-id='{summary_file.parent.name}'] a"
        browser.wait_for(f"document.querySelector({json.dumps(link)}) !== null", 30)
        href = browser.evaluate(f"document.querySelector({json.dumps(link)}).href")
        browser.navigate(href)
        browser.wait_for("document.querySelector('header.glance') !== null")
        assert summary_file.parent.name in browser.evaluate("document.title")
        report_shot = browser.screenshot(tmp_path / "report.png", max_height=1400)
        assert browser.console_errors[errors_before:] == []

    for shot in (view_shot, tab_shot, report_shot):
        assert_png(shot)
        keep(shot)


def assert_same_figures(shown: dict[str, Any], raw: dict[str, Any], summary: dict) -> None:
    """The view's last figures, as displayed, against ``summary.json`` of the same run."""
    streams = {row["name"]: row for row in summary["streams"]}
    assert set(shown["streams"]) == set(streams) and streams
    for name, row in streams.items():
        cells = shown["streams"][name]
        for column in ("delivered", "gaps", "duplicates", "out_of_order", "resets", "reconnects"):
            assert number(cells[column]) == row[column], (name, column)
        assert number(cells["lost"]) == row["missing"] + row["reset_lost"], name
        for quantile in ("p50", "p99"):
            assert number(cells[f"lag_{quantile}"]) == pytest.approx(
                row["lag_ms"][quantile], abs=0.0051
            ), (name, quantile)
    assert sum(row["reconnects"] for row in streams.values()) > 0  # the storm happened
    requests = {row["name"]: row for row in summary["requests"]}
    assert set(shown["requests"]) == set(requests) and requests
    for name, row in requests.items():
        cells = shown["requests"][name]
        assert number(cells["count"]) == row["count"], name
        assert number(cells["failures"]) == row["failures"], name
        for quantile in ("p50", "p99", "p999"):
            assert number(cells[quantile]) == pytest.approx(
                row["latency_ms"][quantile], abs=0.0051
            ), (name, quantile)
        assert cells["locust_p50"] != "—", name  # Locust's own figure beside it
    groups = group_thresholds(summary["thresholds"])
    assert list(shown["thresholds"]) == [group.expression for group in groups]
    for group in groups:
        state = shown["thresholds"][group.expression]["state"]
        assert state == ("holding" if group.passed else "failing"), group.expression
    assert not all(group.passed for group in groups)  # the one meant to fail does
    assert len(shown["workers"]) == 2 == len(summary["workers"]["seen"])
    # Loop lag and the generator's verdict: shown when the workers report them, "—" if not.
    for row in raw["workers"]:
        cells = shown["workers"][row["id"]]
        for key in ("loop_lag_p99_ms", "cpu_percent"):
            assert (cells[key] == "—") == (row[key] is None), (row["id"], key)


def test_the_console_check_catches_a_page_that_throws(tmp_path: Path) -> None:
    """The "no console errors" checks above would pass a broken page if they could not."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><title>broken</title><script>console.error('boom');null.property;</script>"
    )
    with Browser(tmp_path) as browser:
        browser.navigate(page.as_uri())
        browser.wait_for("document.title === 'broken'")
        browser.wait_for("true")  # let the events of the load arrive
        errors = " | ".join(browser.console_errors)
    assert "console.error: boom" in errors
    assert "TypeError" in errors
