"""``wirelab bench --quick --only scaling`` end to end on a tiny run (correctness, not speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wirelab.bench.cli import main


def test_unknown_part_is_a_usage_error(capsys):
    assert main(["--only", "nonsense"]) == 2
    assert "unknown part" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_quick_scaling_part_writes_json_markdown_and_page(tmp_path: Path):
    out = tmp_path / "bench"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wirelab.bench.cli",
            "--quick",
            "--only",
            "scaling",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((out / "bench.json").read_text())
    assert report["errors"] == []
    assert {"machine", "settings", "load_average", "repetitions", "summary", "claims"} <= set(
        report
    )
    assert {"cores", "cpu_model", "kernel"} <= set(report["machine"])
    scaling = report["summary"]["scaling"]
    assert set(scaling["points"]) == {"1", "2"}
    point = scaling["points"]["1"]
    assert point["requests"]["median"] > 0
    assert {"steady_rps", "worker_cpu_s_per_1k", "target_cpu_pct"} <= set(point)
    assert {"report_bytes", "merge_ms_per_report"} <= set(scaling["report"])
    assert {"per_worker_capacity_rps", "here", "cluster"} <= set(scaling["model"])
    assert "Scaling" in (out / "results.md").read_text()
    assert "<svg" in (out / "index.html").read_text()
