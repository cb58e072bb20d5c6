"""The command line: usage errors are one line with exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from wirelab.cli import build_parser
from wirelab.processes import free_port
from wirelab.run_options import add_run_arguments, request_from_args, request_from_env
from wirelab.scenarios import ScenarioError, parse_scenario
from wirelab.units import parse_duration, parse_rate, parse_size


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
        (["targets", "serve", "rest", "--rate", "-1"], "not a rate: '-1'"),
        (["targets", "check", "rest:8080"], "'rest:8080' is not PROTOCOL=URL"),
        (["targets", "check", "grpc=grpc://host"], "not host:port"),
        (["cluster", "leader"], "invalid choice: 'leader'"),
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


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("500", 500), ("500/s", 500), ("500/sec", 500), ("500 / second", 500), ("30000/m", 500),
     ("30000/min", 500), ("1800000/h", 500), ("12.5", 12.5), ("500/SEC", 500)],
)  # fmt: skip
def test_one_rate_grammar_for_flags_variables_scenario_files_and_user_options(
    text: str, per_second: float
) -> None:
    """``wirelab run --rate``, the cluster's WIRELAB_RUN_ARRIVAL_RATE and a scenario's rate
    read a rate the same way (the users' own --rate/WIRELAB_RATE: see the next test)."""
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    from_flag = request_from_args(parser.parse_args(["--rate", text])).rate
    from_env = request_from_env({"WIRELAB_RUN_ARRIVAL_RATE": text}).rate
    from_file = parse_scenario(f"name: x\nusers: {{rest: 1}}\nrate: {text}").rate
    assert from_flag == from_env == from_file == parse_rate(text) == per_second


def test_the_users_rate_option_reads_the_one_grammar() -> None:
    """Asked in a child: importing the users imports Locust, which patches this process."""
    check = (
        "from wirelab.users.options import parse_rate; import wirelab.units; "
        "print(parse_rate is wirelab.units.parse_rate, parse_rate('500/sec'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.split() == ["True", "500.0"], result.stderr


@pytest.mark.parametrize("text", ["fast", "500/fortnight", "-5/s", "0", "1e3/s", "500s"])
def test_every_reader_of_a_rate_refuses_the_same_texts(text: str) -> None:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_run_arguments(parser)
    with pytest.raises(argparse.ArgumentError):
        parser.parse_args(["--rate", text])
    with pytest.raises(ValueError):
        request_from_env({"WIRELAB_RUN_ARRIVAL_RATE": text})
    with pytest.raises(ScenarioError):
        parse_scenario(f"name: x\nusers: {{rest: 1}}\nrate: '{text}'")


def test_a_feed_may_publish_nothing_but_an_arrival_rate_is_more_than_zero() -> None:
    assert parse_rate("0", allow_zero=True) == 0
    with pytest.raises(ValueError, match="more than 0"):
        parse_rate("0/s")


def test_targets_check_fails_with_exit_3_when_a_target_never_answers() -> None:
    result = wirelab("targets", "check", "--timeout", "1s", f"rest=http://127.0.0.1:{free_port()}")
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("FAIL rest=http://127.0.0.1:")


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """A parser and every subcommand's parser below it."""
    found = [parser]
    for action in parser._actions:  # argparse keeps subcommands nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _parsers(sub)
    return found


def test_every_help_page_renders_its_percent_signs_once() -> None:
    """argparse %-formats help strings but not descriptions: a '%%' meant for one shows."""
    pages = {sub.prog: sub.format_help() for sub in _parsers(build_parser())}
    assert "wirelab capacity" in pages
    assert [prog for prog, text in pages.items() if "%%" in text] == []
    assert "70% of its core" in " ".join(pages["wirelab capacity"].split())
