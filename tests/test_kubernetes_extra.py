"""The Kubernetes client is the ``kubernetes`` extra: a Locust master asked for the
Kubernetes orchestrator on an installation without it stops before any load, with one line
naming the extra and exit code 2.

A real Locust process runs a locustfile that installs the scenario driver, as every run's
does; "not installed" is made by blocking the import (``sys.modules["kubernetes"] = None``,
which is what Python does for a package that is absent) in that process only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wirelab.exitcodes import EXIT_USAGE

LOCUSTFILE = """
from locust import User, constant, task

from wirelab.scenarios.driver import install

install([])


class Idle(User):
    wait_time = constant(0.5)

    @task
    def nothing(self):
        pass
"""

_LOCUST = """
import sys
if sys.argv.pop(1) == "without-client":
    sys.modules["kubernetes"] = None
from locust.main import main
sys.argv = ["locust", *sys.argv[1:]]
main()
"""


def _locust(tmp_path: Path, client: str) -> subprocess.CompletedProcess[str]:
    locustfile = tmp_path / "idle.py"
    locustfile.write_text(LOCUSTFILE)
    env = {
        **os.environ,
        "WIRELAB_ORCHESTRATOR": "kubernetes",
        "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run(
        [sys.executable, "-c", _LOCUST, client, "-f", str(locustfile), "--headless",
         "-u", "1", "-r", "1", "-t", "2s", "--only-summary"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.timeout(120)
def test_a_kubernetes_run_without_the_extra_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    done = _locust(tmp_path, "without-client")
    assert done.returncode == EXIT_USAGE, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        "wirelab: error: the Kubernetes orchestrator needs the Kubernetes client: "
        "pip install 'wirelab[kubernetes]'"
    ], done.stderr[-3000:]
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(120)
def test_with_the_client_but_no_cluster_the_run_goes_on_and_only_actions_would_fail(
    tmp_path: Path,
) -> None:
    """The same run with the client installed: no credentials is the cluster's problem, not
    the installation's, so the run itself completes (its actions would fail, saying why)."""
    done = _locust(tmp_path, "with-client")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the Kubernetes orchestrator cannot start: no Kubernetes credentials" in done.stderr
