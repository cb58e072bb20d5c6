"""The live view's figures and routes in a real Locust master's Flask app (no browser), and
how the run's thresholds reach that master.

The master's cases live in ``tests/live_view_master.py`` and each runs in a fresh Python
(Locust patches the interpreter it is imported into with gevent; pytest's must stay
unpatched). The browser tests are in ``test_live_view_browser.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from wirelab.plan import RunPlan
from wirelab.run_locustfile import write_locustfile
from wirelab.scenarios import load_scenario
from wirelab.thresholds import parse_threshold
from wirelab.webview.settings import THRESHOLDS_ENV, thresholds_from_environment

REPO = Path(__file__).resolve().parents[1]


def in_a_master(case: str) -> None:
    """Run ``case`` of ``tests/live_view_master.py`` in a child Python; fail with its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WIRELAB_", "LOCUST_"))}
    result = subprocess.run(
        [sys.executable, "-m", "tests.live_view_master", case],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert f"ok {case}" in result.stdout


def test_live_figures_are_the_exact_merge_of_every_workers_reports():
    in_a_master("exact_merge")


def test_worker_rows_show_loop_lag_and_the_generator_verdict_only_when_reported():
    in_a_master("worker_rows")


def test_thresholds_are_judged_live_one_row_per_expression_in_the_order_written():
    in_a_master("thresholds_live")


def test_annotations_arrive_once_each_when_the_page_asks_since_the_last_one():
    in_a_master("annotations_since")


def test_locusts_own_tabs_carry_the_wirelab_rows_on_its_stats_request():
    in_a_master("locust_tabs")


def test_the_view_requires_the_web_login_when_it_is_on():
    in_a_master("login_required")


def test_a_login_never_redirects_off_this_ui():
    in_a_master("login_stays_on_this_ui")


def test_the_runs_thresholds_reach_the_master_through_its_environment(tmp_path: Path):
    scenario = load_scenario("smoke")
    extra = parse_threshold("ws echo:p99<50ms")
    plan = RunPlan(scenario=scenario, thresholds=[extra], report_dir=tmp_path)
    env = plan.process_environment({})
    parsed, errors = thresholds_from_environment(env)
    assert [t.expression for t in parsed] == ["ws echo:p99<50ms"] and errors == []
    # `wirelab up` judges nothing at the end, but its view shows the scenario's thresholds.
    up = RunPlan(scenario=scenario, thresholds=[], report_dir=tmp_path)
    parsed, _ = thresholds_from_environment(up.process_environment({}))
    assert [t.expression for t in parsed] == scenario.thresholds
    # A bad entry is named, and the rest still count.
    parsed, errors = thresholds_from_environment({THRESHOLDS_ENV: '["ws:lost==0", "x:p98<1ms"]'})
    assert [t.expression for t in parsed] == ["ws:lost==0"]
    assert len(errors) == 1 and "p98" in errors[0]
    assert thresholds_from_environment({THRESHOLDS_ENV: "ws:lost==0"})[1]
    # The generated locustfile loads the view in the master.
    (tmp_path / plan.run_id).mkdir()
    source = write_locustfile(tmp_path / plan.run_id, scenario).read_text()
    assert "import wirelab.webview.plugin" in source
