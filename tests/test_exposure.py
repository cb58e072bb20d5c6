"""Nothing that can change the lab answers beyond loopback without credentials.

The admin port (drain, drop, counters) of a target process: on loopback it may be open; bound
beyond loopback the process refuses to start without ``WIRELAB_ADMIN_TOKEN``, and with it
every admin path but the health probes requires the bearer token.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.fixtures.targets import TargetFactory
from wirelab.exposure import is_loopback
from wirelab.processes import free_port


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True),
        ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.7", False),
        ("example.com", False), ("", False),
    ],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_admin_port_beyond_loopback_without_a_token_is_a_usage_error() -> None:
    env = {key: value for key, value in os.environ.items() if key != "WIRELAB_ADMIN_TOKEN"}
    result = subprocess.run(
        [
            sys.executable, "-m", "wirelab", "targets", "serve", "rest", "--port",
            str(free_port()), "--admin-port", str(free_port()), "--admin-host", "0.0.0.0",
        ],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "WIRELAB_ADMIN_TOKEN" in lines[0]
    assert "Traceback" not in result.stderr


def request(url: str, method: str = "GET", token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, method=method, headers=headers), timeout=5
        ) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_admin_port_beyond_loopback_requires_the_token_except_for_health(
    targets: TargetFactory,
) -> None:
    admin_port = free_port()
    token = "admin-" + os.urandom(8).hex()
    running = targets.start(
        "rest",
        args=["--admin-port", str(admin_port), "--admin-host", "0.0.0.0"],
        env={**os.environ, "WIRELAB_ADMIN_TOKEN": token},
    )
    base = f"http://127.0.0.1:{admin_port}"
    assert request(f"{base}/healthz") == 200
    assert request(f"{base}/readyz") == 200
    assert request(f"{base}/stats") == 401
    assert request(f"{base}/admin/drain", "POST") == 401
    assert request(f"{base}/admin/drop", "POST", token="wrong") == 401
    assert request(f"{base}/stats", token=token) == 200
    assert running.process.alive
