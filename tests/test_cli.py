"""The command line: usage errors are one line with exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from wirelab.units import parse_duration, parse_size


def wirelab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wirelab", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["targets", "serve", "mqtt"], "unknown protocol 'mqtt'"),
        (["targets", "serve", "rest", "ws", "--port", "9000"], "--port serves one protocol"),
        (["targets", "serve", "rest", "--grace", "soon"], "not a duration"),
        (["targets", "serve", "rest", "--rate", "-1"], "must be >= 0"),
        (["targets", "serve", "rest", "ws", "--ports", "rest=1"], "--ports has no port for ws"),
        (["targets", "serve", "rest", "--payload-size", "lots"], "not a size"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], needle: str) -> None:
    result = wirelab(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_demo_runs_the_smoke_scenario_and_writes_a_report(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wirelab", "demo", "--duration", "5s", "--report-dir", "out"],
        capture_output=True,
        check=False,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = (tmp_path / "out").glob("smoke-*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {row["protocol"] for row in summary["requests"]} >= {"rest", "poll", "ws", "grpc"}
    assert {row["protocol"] for row in summary["streams"]} == {"poll", "sse", "ws", "grpc"}
    assert (run_dir / "report.html").stat().st_size > 10_000
    assert f"report: out/{run_dir.name}/report.html" in result.stdout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("250ms", 0.25), ("2m", 120.0), ("1.5", 1.5), ("10us", 1e-5), ("1h", 3600)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-1s", "1d", "ten seconds"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_sizes() -> None:
    assert parse_size("64") == 64
    assert parse_size("4KiB") == 4096
    assert parse_size("1MB") == 1_000_000
    with pytest.raises(ValueError, match="not a size"):
        parse_size("1.5KiB")
