"""The thin locustfiles, run the way people run Locust: ``locust -f ... --headless``."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_users_support import LOCUSTFILES, REPO, harness_env


def locust(args: list[str], tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: PLW1510 - callers check the exit code
        [sys.executable, "-m", "locust", *args, "--csv", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=harness_env(),
        cwd=REPO,
    )


def stats_rows(tmp_path: Path) -> list[dict[str, str]]:
    with (tmp_path / "run_stats.csv").open() as stats:
        return [row for row in csv.DictReader(stats) if row["Name"] != "Aggregated"]


def test_all_locustfile_drives_every_protocol_headless(targets, tmp_path) -> None:
    lab = targets.start(["rest", "sse", "ws", "grpc"], args=["--rate", "20"])
    completed = locust(
        [
            "-f", str(LOCUSTFILES / "all.py"), "--headless", "-u", "8", "-r", "8", "-t", "5s",
            "--rest-url", lab.url("rest"), "--sse-url", lab.url("sse"),
            "--ws-url", lab.url("ws"), "--grpc-target", lab.url("grpc"),
        ],
        tmp_path,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    rows = stats_rows(tmp_path)
    assert {row["Type"] for row in rows} == {"rest", "poll", "sse", "ws", "grpc"}
    failing = {row["Name"]: row["Failure Count"] for row in rows if row["Failure Count"] != "0"}
    assert not failing, (failing, completed.stderr[-4000:])
    names = {row["Name"] for row in rows}
    assert {"sse deliver", "ws deliver", "grpc deliver", "poll long deliver"} <= names


def test_ws_locustfile_runs_with_plain_locust_host(targets, tmp_path) -> None:
    ws = targets.start("ws", args=["--rate", "20"])
    completed = locust(
        ["-f", str(LOCUSTFILES / "ws.py"), "--headless", "-u", "2", "-r", "2", "-t", "2s",
         "--host", ws.url("ws")],
        tmp_path,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    names = {row["Name"] for row in stats_rows(tmp_path)}
    assert {"ws deliver", "ws connect"} <= names
    assert names & {"ws echo", "ws ping"}  # 2 s of 0.5-1.5 s waits: one of them at least


def test_a_missing_target_url_stops_with_a_clear_message(tmp_path) -> None:
    completed = locust(
        ["-f", str(LOCUSTFILES / "sse.py"), "--headless", "-u", "1", "-t", "2s"], tmp_path
    )
    assert "no SSE target: give --sse-url (or WIRELAB_SSE_URL), or --host" in completed.stderr
    assert completed.returncode == 2  # a configuration error, as wirelab's own commands say


@pytest.mark.parametrize("locustfile", sorted(LOCUSTFILES.glob("*.py")), ids=lambda p: p.name)
def test_no_locustfile_shadows_an_importable_module(locustfile: Path) -> None:
    # Locust imports a locustfile under its file name, with its folder first on sys.path:
    # a locustfiles/grpc.py would replace the grpc package for everything after it.
    assert importlib.util.find_spec(locustfile.stem) is None, locustfile.name


OPTIONS_CHECK = """
import json, os
from types import SimpleNamespace
import wirelab.users  # registers the options
from locust.argument_parser import get_parser, ui_extra_args_dict
from wirelab.users.options import grpc_endpoints, parse_rate, setting, target_urls

os.environ["WIRELAB_SSE_URL"] = "http://10.0.0.1:1,http://10.0.0.2:2/"
parsed = get_parser().parse_args(["--ws-url", "ws://a:1", "--rate", "3000/m"])
env = SimpleNamespace(parsed_options=parsed)
print(json.dumps({
    "ui": sorted(ui_extra_args_dict([])),
    "rate": [parse_rate(parsed.rate), parse_rate("500/s"), parse_rate("12.5")],
    "sse_from_env": target_urls(env, "sse_url", None, None, "http"),
    "ws_from_cli_over_class": target_urls(env, "ws_url", "ws://class:2", None, "ws"),
    "rest_from_host_ws_scheme": target_urls(env, "rest_url", None, "ws://h:3", "http"),
    "grpc_prefix_dropped": target_urls(env, "grpc_target", "grpc://g:4,g:5", None, "grpc"),
    "reconnect_default": setting(env, "reconnect"),
    # The chart's target for a headless Service: gRPC's DNS resolver, not a URL scheme.
    "grpc_headless": grpc_endpoints(env, "dns:///wl-grpc-headless:8083", None),
    "grpc_headless_tls": grpc_endpoints(env, "grpcs://dns:///wl-grpc-headless:8083", None),
}))
"""


def test_options_reach_the_web_ui_and_resolve_cli_then_env_then_class_then_host() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", OPTIONS_CHECK],
        capture_output=True,
        text=True,
        timeout=60,
        env=harness_env(),
        check=True,
    )
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    assert {"rest_url", "sse_url", "ws_url", "grpc_target", "reconnect", "rate"} <= set(seen["ui"])
    assert {"payload_size", "open_concurrency", "deliver_sample"} <= set(seen["ui"])
    assert seen["rate"] == [50.0, 500.0, 12.5]
    assert seen["sse_from_env"] == ["http://10.0.0.1:1", "http://10.0.0.2:2"]
    assert seen["ws_from_cli_over_class"] == ["ws://a:1"]
    assert seen["rest_from_host_ws_scheme"] == ["http://h:3"]
    assert seen["grpc_prefix_dropped"] == ["g:4", "g:5"]
    assert seen["reconnect_default"] == "server_hint:base=0.5,cap=30"
    assert seen["grpc_headless"] == [["dns:///wl-grpc-headless:8083"], False]
    assert seen["grpc_headless_tls"] == [["dns:///wl-grpc-headless:8083"], True]
