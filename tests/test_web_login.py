"""Locust's web UI behind wirelab's login (``--web-login`` + :mod:`wirelab.webauth`).

Nothing but the login page answers without a session; a wrong password gets nowhere; the
right one (from ``WIRELAB_WEB_USER``/``WIRELAB_WEB_PASSWORD``) opens the UI and its API.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from wirelab.processes import ManagedProcess, free_port

LOCUSTFILE = """
import wirelab.webauth  # noqa: F401 - registers the login plugin
from locust import User, constant, task


class Idle(User):
    wait_time = constant(1)

    @task
    def nothing(self):
        pass
"""


@pytest.fixture
def web_ui(tmp_path: Path):
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    port = free_port()
    env = {**os.environ, "WIRELAB_WEB_USER": "operator", "WIRELAB_WEB_PASSWORD": "s3cret-pw"}
    argv = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--web-login",
        "--web-host", "127.0.0.1", "--web-port", str(port), "--host", "http://127.0.0.1:9",
    ]  # fmt: skip
    process = ManagedProcess(argv, name="locust-web", env=env, log_path=tmp_path / "locust.log")
    process.start()
    base = f"http://127.0.0.1:{port}"
    try:
        process.wait_ready(lambda: httpx.get(f"{base}/login", timeout=1).status_code == 200, 30)
        yield base
    finally:
        process.stop(grace=5)


def test_web_ui_requires_login_and_accepts_only_the_configured_credentials(web_ui: str) -> None:
    with httpx.Client(base_url=web_ui, timeout=5, follow_redirects=False) as anonymous:
        for method, path in [("GET", "/"), ("GET", "/stats/requests"), ("POST", "/swarm"),
                             ("POST", "/stop"), ("POST", "/user")]:  # fmt: skip
            response = anonymous.request(method, path)
            assert response.status_code in (302, 401), (method, path, response.status_code)
            if response.status_code == 302:
                location = urllib.parse.urlsplit(response.headers["location"]).path
                assert location == "/login", (method, path)
    with httpx.Client(base_url=web_ui, timeout=5, follow_redirects=False) as intruder:
        response = intruder.post(
            "/wirelab/login", data={"username": "operator", "password": "wrong"}
        )
        assert urllib.parse.urlsplit(response.headers["location"]).path == "/login"
        assert intruder.get("/stats/requests").status_code in (302, 401)
    with httpx.Client(base_url=web_ui, timeout=5, follow_redirects=False) as operator:
        response = operator.post(
            "/wirelab/login", data={"username": "operator", "password": "s3cret-pw"}
        )
        assert response.status_code == 302
        assert urllib.parse.urlsplit(response.headers["location"]).path == "/"
        assert operator.get("/stats/requests").status_code == 200
        assert operator.get("/").status_code == 200


def test_wirelab_up_beyond_loopback_without_credentials_is_a_usage_error(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("WIRELAB_WEB_USER", "WIRELAB_WEB_PASSWORD")
    }
    result = subprocess.run(
        [sys.executable, "-m", "wirelab", "up", "--web-host", "0.0.0.0",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "WIRELAB_WEB_PASSWORD" in lines[0]
    assert not any(tmp_path.iterdir())


@contextmanager
def wirelab_up_behind_login(
    tmp_path: Path, *args: str, user: str, password: str, timeout: float = 60
) -> Iterator[tuple[ManagedProcess, str]]:
    """``wirelab up ARGS`` on every interface (so behind the login), until its login page
    answers; yields the process and the UI's base URL, and stops it by pid afterwards."""
    port = free_port()
    env = {**os.environ, "WIRELAB_WEB_USER": user, "WIRELAB_WEB_PASSWORD": password}
    argv = [
        sys.executable, "-m", "wirelab", "up", *args, "--web-host", "0.0.0.0",
        "--web-port", str(port), "--report-dir", str(tmp_path / "reports"),
    ]  # fmt: skip
    process = ManagedProcess(argv, name="wirelab-up", env=env, log_path=tmp_path / "up.log")
    process.start()
    base = f"http://127.0.0.1:{port}"
    try:
        process.wait_ready(lambda: httpx.get(f"{base}/login", timeout=2).is_success, timeout)
        yield process, base
    finally:
        process.stop(grace=30)


def test_wirelab_up_beyond_loopback_serves_the_ui_behind_the_login(tmp_path: Path) -> None:
    up = wirelab_up_behind_login(
        tmp_path, "--scenario", "smoke", "--protocols", "rest", "--workers", "1",
        user="operator", password="pw-123456",
    )  # fmt: skip
    with up as (_, base), httpx.Client(base_url=base, timeout=5, follow_redirects=False) as client:
        assert client.get("/stats/requests").status_code in (302, 401)
        assert client.post("/swarm", data={"user_count": 1}).status_code in (302, 401)
        client.post("/wirelab/login", data={"username": "operator", "password": "pw-123456"})
        assert client.get("/stats/requests").status_code == 200
