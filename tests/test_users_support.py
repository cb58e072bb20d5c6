"""Helpers for the user-class tests: run Locust users in a child process, read what they saw.

Locust monkey-patches the interpreter with gevent on import, so the users never run inside
the pytest process: :func:`run_users` starts ``python -m wirelab.users.harness`` (a real
Locust ``Environment`` and local runner, bounded in users and seconds) and returns its JSON.
This module holds no tests: the other ``test_users_*`` modules use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.fixtures.targets import TargetFactory
from wirelab.processes import ManagedProcess, free_port

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILES = REPO / "locustfiles"


def shared_targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TargetFactory]:
    """Targets shared by the tests of one module (each start costs ~1 s of a 2-core box).

    A test module makes it its fixture with
    ``module_targets = pytest.fixture(scope="module", name="module_targets")(shared_targets)``.
    """
    factory = TargetFactory(tmp_path_factory.mktemp("targets"))
    try:
        yield factory
    finally:
        factory.stop_all()


def write_locustfile(directory: Path, source: str, name: str = "users_under_test.py") -> Path:
    """A locustfile with ``source`` (dedented), for a user subclass made for one test."""
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def harness_command(
    locustfile: Path | str,
    *,
    users: int,
    duration: float,
    args: list[str],
    user_classes: list[str] | None = None,
    spawn_rate: float = 100,
) -> list[str]:
    command = [
        sys.executable, "-m", "wirelab.users.harness",
        "--locustfile", str(locustfile),
        "--users", str(users),
        "--spawn-rate", str(spawn_rate),
        "--duration", str(duration),
    ]  # fmt: skip
    for name in user_classes or ():
        command += ["--user-class", name]
    return [*command, "--", *args]


def harness_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WIRELAB_", "LOCUST_"))
    }
    env.update(extra or {})
    return env


def parse_output(stdout: str, stderr: str, returncode: int) -> dict[str, Any]:
    assert returncode == 0, f"harness exited {returncode}\n{stderr[-4000:]}"
    lines = stdout.strip().splitlines()
    assert lines, f"harness printed nothing\n{stderr[-4000:]}"
    result = json.loads(lines[-1])
    result["stderr"] = stderr
    return result


def run_users(
    locustfile: Path | str,
    *,
    users: int,
    duration: float,
    args: list[str],
    user_classes: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    """Run the locustfile's users for ``duration`` s in a child process; its JSON report."""
    completed = subprocess.run(  # noqa: PLW1510 - the exit code is checked with the output
        harness_command(
            locustfile, users=users, duration=duration, args=args, user_classes=user_classes
        ),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=harness_env(env),
        cwd=REPO,
    )
    return parse_output(completed.stdout, completed.stderr, completed.returncode)


def stat(result: dict[str, Any], request_type: str, name: str) -> dict[str, Any]:
    """Locust's stats entry for ``(request_type, name)``; fails listing what there is."""
    key = f"{request_type} {name}"
    assert key in result["stats"], f"no requests named {key!r}; got {sorted(result['stats'])}"
    return result["stats"][key]


def stream(result: dict[str, Any], protocol: str, name: str) -> dict[str, Any]:
    """wirelab's stream series ``(protocol, name)`` as recorded over the whole run."""
    key = f"{protocol} {name}"
    assert key in result["streams"], f"no stream {key!r}; got {sorted(result['streams'])}"
    return result["streams"][key]


def assert_no_failures(result: dict[str, Any]) -> None:
    failing = {key: entry for key, entry in result["stats"].items() if entry["failures"]}
    assert not failing, f"failures: {failing}\nerrors: {result['errors']}"


def peers(pid: int, port: int) -> list[str]:
    """Addresses of the clients connected to ``port`` of process ``pid``, as it sees them."""
    return [
        connection.raddr.ip
        for connection in psutil.Process(pid).net_connections(kind="tcp")
        if connection.status == psutil.CONN_ESTABLISHED
        and connection.laddr.port == port
        and connection.raddr
    ]


def wait_for_peers(pid: int, ports: list[int], count: int, timeout: float = 30) -> dict:
    """Poll until every port has ``count`` clients (or time runs out); the peers per port."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {port: peers(pid, port) for port in ports}
        if all(len(found) >= count for found in seen.values()) or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


@contextlib.contextmanager
def locust_cluster(
    locustfile: Path, logs: Path, *, workers: int, master_args: list[str]
) -> Iterator[ManagedProcess]:
    """A real Locust master (headless, ZeroMQ on loopback) and ``workers`` worker processes
    running ``locustfile``; yields the master. Every process is stopped by pid afterwards."""
    port = free_port()
    locust = [sys.executable, "-m", "locust", "-f", str(locustfile)]
    env = harness_env()
    master = ManagedProcess(
        [
            *locust, "--master", "--headless", "--master-bind-host", "127.0.0.1",
            "--master-bind-port", str(port), "--expect-workers", str(workers), *master_args,
        ],
        name="locust master", env=env, cwd=REPO, log_path=logs / "master.log",
    )  # fmt: skip
    started = [
        ManagedProcess(
            [*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
            name=f"locust worker {index}",
            env=env,
            cwd=REPO,
            log_path=logs / f"worker{index}.log",
        )
        for index in range(workers)
    ]
    with master:
        for worker in started:
            worker.start()
        try:
            yield master
        finally:
            for worker in started:
                worker.stop(grace=5)
