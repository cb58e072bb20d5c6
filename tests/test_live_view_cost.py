"""``benchmarks/live_view_cost.py`` on a tiny run: its master really merges the workers'
reports and its pollers really ask the view and Locust's tab (speed is never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_cost_benchmark_drives_real_reports_and_real_polls(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "live_view_cost.py"), "--seconds", "3",
         "--rounds", "1", "--workers", "5", "--requests", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    conditions = figures["conditions"]
    assert list(conditions) == ["reports", "view", "view+locust"]
    for condition in conditions.values():
        assert condition["reports_per_s_median"] > 0  # the master merged the workers' reports
        assert condition["cpu_percent_median"] > 0
    assert conditions["reports"]["view_polls"] == 0
    assert conditions["view"]["view_polls"] >= 1 and conditions["view"]["locust_polls"] == 0
    assert conditions["view+locust"]["locust_polls"] >= 1
    assert conditions["view"]["view_bytes_per_poll"] > 1000  # whole figures, not an error
    assert figures["report_bytes"] > 1000 and figures["snapshot_compute_ms"] > 0
    assert all(ms > 0 for ms in figures["request_cpu_ms"].values()), figures["request_cpu_ms"]
    assert "written:" in result.stdout
