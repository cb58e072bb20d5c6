"""``wirelab-bench --quick --only scaling`` end to end on a tiny run (correctness, not speed)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from wirelab_bench.cli import main
from wirelab_bench.lab import cores, pinned
from wirelab_bench.stats import summarize_runs


def test_unknown_part_is_a_usage_error(capsys):
    assert main(["--only", "nonsense"]) == 2
    assert "unknown part" in capsys.readouterr().err


def test_a_negative_refine_is_a_usage_error_before_anything_runs(capsys, tmp_path: Path):
    assert main(["--refine", "-1", "--out", str(tmp_path / "bench")]) == 2
    assert "--refine must be 0 or more" in capsys.readouterr().err
    assert not (tmp_path / "bench").exists()


def test_zero_repetitions_is_a_usage_error_not_the_default(capsys, tmp_path: Path):
    assert main(["--repeat", "0", "--out", str(tmp_path / "bench")]) == 2
    assert "--repeat must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "bench").exists()


def test_wirelab_bench_still_runs_the_bench_for_one_release_with_a_warning():
    done = subprocess.run(
        [sys.executable, "-m", "wirelab", "bench", "--repeat", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    warning, *rest = done.stderr.splitlines()
    assert warning == (
        "wirelab: warning: `wirelab bench` is deprecated and goes in the next release: "
        "run `wirelab-bench`"
    )
    assert rest == ["wirelab-bench: --repeat must be at least 1"]  # the bench's own check


def test_without_the_benchmarks_installed_wirelab_bench_names_the_new_command():
    """An installed wirelab (no source checkout): one line, exit 2, no traceback."""
    program = (
        "import sys; sys.modules['wirelab_bench'] = None\n"  # as where it is not installed
        "from wirelab.cli import main; sys.exit(main(['bench', '--quick']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "wirelab: error: `wirelab bench` is now `wirelab-bench` (`make bench`) in a source "
        "checkout; it is not part of the installed package"
    ]


def _recorded_run(
    out: Path, ceilings: dict[str, tuple[float, str]], p50_ms: float, steal: dict | None = None
) -> None:
    """A bench.json with two repetitions of the request part: (ceiling, limited by), and
    the host-steal summary when one is given (runs recorded before it have none)."""
    reps = [
        {
            "request": {
                variant: {"p50_ms": p50_ms, "max_sustained_rps": rps, "limited_by": limit}
                for variant, (rps, limit) in ceilings.items()
            }
        }
        for _ in range(2)
    ]
    out.mkdir()
    summary = {"request": summarize_runs([rep["request"] for rep in reps])}
    report = {"summary": summary, "repetitions": reps}
    if steal is not None:
        report["steal_summary"] = steal
    (out / "bench.json").write_text(json.dumps(report))


def test_comparing_runs_leaves_out_ceilings_that_are_lower_bounds_in_both(capsys, tmp_path):
    """REST's ladders ended at the generator in both runs (2,000 and 1,000: both "at least"),
    gRPC's at the target in one: that one is a measurement and its miss counts."""
    first, second = tmp_path / "first", tmp_path / "second"
    steal = {"intervals": 7, "steal_pct": 12.5, "worst_pct": 30.1, "worst_at": "rep 2 push start"}
    _recorded_run(
        first, {"rest": (2000.0, "generator"), "grpc": (2000.0, "target")}, 1.0, steal=steal
    )
    _recorded_run(second, {"rest": (1000.0, "ladder end"), "grpc": (1000.0, "generator")}, 1.1)
    assert main(["--out", str(first), "--compare", str(second)]) == 0
    result = json.loads((first / "reproducibility.json").read_text())
    assert set(result["rows"]) == {
        "request.rest.p50_ms",
        "request.grpc.p50_ms",
        "request.grpc.max_sustained_rps",
    }
    assert result["rows"]["request.grpc.max_sustained_rps"]["within"] is False
    assert (result["within"], result["compared"]) == (2, 3)
    assert result["lower_bounds"] == {
        "request.rest.max_sustained_rps": {"first": 2000.0, "second": 1000.0, "diff_pct": 66.7}
    }
    printed = capsys.readouterr().out
    assert "not compared: 1 ceiling(s)" in printed
    # The host's steal is printed for the run that recorded it, and only for that one.
    assert result["steal"] == {str(first): steal, str(second): None}
    assert f"host steal during {first}: 12.5% of the time" in printed
    assert "30.1% in the part from 'rep 2 push start'" in printed
    assert f"host steal during {second}" not in printed


@pytest.mark.timeout(120)
def test_quick_scaling_part_writes_json_markdown_and_page(tmp_path: Path):
    out = tmp_path / "bench"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wirelab_bench.cli",
            "--quick",
            "--only",
            "scaling",
            "--idle",
            "poll",
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
    # The machine's speed was probed on every core before the part, and the page says so.
    (probe,) = report["speed"]
    assert set(probe["cores"]) == {str(core) for core in os.sched_getaffinity(0)}
    assert all(row["median_ms"] > 0 for row in probe["cores"].values())
    assert report["speed_summary"]["probes"] == 1
    assert "Core speed" in (out / "results.md").read_text()
    # /proc/stat was read at the part's start and at the end: one interval, on the page.
    readings = [reading["at"] for reading in report["cpu_ticks"]]
    assert readings == ["rep 1 scaling start", "rep 1 end"]
    assert report["steal_summary"]["intervals"] == 1
    assert 0 <= report["steal_summary"]["steal_pct"] <= 100
    assert "Host steal" in (out / "results.md").read_text()
    # --idle poll: the 0 µs request was held (CI runs as root; the device read it back), and
    # the page says so. Whether the CPUs had idle states to keep out of is the host's.
    assert report["cpu_idle"]["mode"] == "poll", report["cpu_idle"]["reason"]
    assert report["cpu_idle"]["held_latency_us"] == 0
    assert "polled instead of halting" in (out / "results.md").read_text()
    assert "Scaling" in (out / "results.md").read_text()
    assert "<svg" in (out / "index.html").read_text()


@pytest.mark.timeout(120)
def test_a_cancelled_bench_stops_every_process_it_started(tmp_path: Path):
    """SIGTERM mid-part (a CI runner cancelling): exit 130, no target or generator left."""
    bench = subprocess.Popen(
        [sys.executable, "-m", "wirelab_bench.cli", "--quick", "--only", "request",
         "--out", str(tmp_path / "bench")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(children) < 2:  # a target and a generator
            children = psutil.Process(bench.pid).children(recursive=True)
            time.sleep(0.2)
        assert len(children) >= 2, "the bench never started its target and generator"
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=60) == 130
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], [child.cmdline() for child in alive]
        assert not (tmp_path / "bench" / "bench.json").exists()
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
        for child in children:  # only when the test failed: they are ours, by pid
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


@pytest.mark.parametrize(
    ("available", "server", "generator"),
    [({0, 1}, [1], [0]), ({0, 1, 2, 3}, [3], [0, 1, 2]), ({5}, [5], [5])],
)
def test_server_and_generators_get_their_own_cores(monkeypatch, available, server, generator):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: available)
    assert cores("server") == server and cores("generator") == generator
    assert pinned(["wrk", "-c", "16"], "server") == ["taskset", "-c", ",".join(map(str, server)),
                                                    "wrk", "-c", "16"]  # fmt: skip
