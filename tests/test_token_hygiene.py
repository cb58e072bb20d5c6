"""Tokens never travel in URLs and never reach a log, even with every log at DEBUG.

Targets run with ``--log-level debug`` and ``WIRELAB_TARGET_TOKEN``; a short distributed run
(Locust master and worker at ``DEBUG`` through ``LOCUST_LOGLEVEL``) carries the same token in
``WIRELAB_TOKEN`` to every protocol. Then every byte the run and the targets wrote — logs,
reports, the generated locustfile, stdout and stderr — is searched for the token.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.fixtures.targets import TargetFactory
from tests.test_run import PROTOCOLS, only_run_dir, url_args


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_token_is_absent_from_urls_and_from_every_log_at_debug_level(
    targets: TargetFactory, tmp_path: Path
) -> None:
    token = "tok-" + secrets.token_hex(16)
    running = targets.start(
        PROTOCOLS,
        args=["--rate", "20", "--log-level", "debug"],
        env={**os.environ, "WIRELAB_TARGET_TOKEN": token},
    )
    report_dir = tmp_path / "reports"
    env = {**os.environ, "WIRELAB_TOKEN": token, "LOCUST_LOGLEVEL": "DEBUG"}
    env.pop("WIRELAB_TARGET_TOKEN", None)
    result = subprocess.run(
        [
            sys.executable, "-m", "wirelab", "run", "--report-dir", str(report_dir),
            "--scenario", "smoke", "--duration", "5s", "--workers", "1", "--no-progress",
            *url_args(running),
        ],
        capture_output=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode in (0, 1), output[-3000:].decode(errors="replace")
    run_dir = only_run_dir(report_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    # The token was really used: every protocol was served, nothing refused with 401.
    assert {row["protocol"] for row in summary["requests"]} >= {"rest", "ws", "grpc", "sse"}
    assert all(row["failures"] == 0 for row in summary["requests"]), summary["requests"]
    assert all(row["delivered"] > 0 for row in summary["streams"]), summary["streams"]
    target_log = running.log_text()
    assert target_log, "the targets wrote no log at all"
    logs = list((run_dir / "logs").rglob("*"))
    assert logs, "the run wrote no logs"
    needle = token.encode()
    assert needle not in output
    assert files_containing(run_dir, needle) == []
    assert files_containing(tmp_path, needle) == []
    assert token not in target_log
    # Debug logging really was on somewhere (so the test can fail): Locust's DEBUG lines.
    all_logs = b"".join(path.read_bytes() for path in logs if path.is_file())
    assert b"DEBUG" in all_logs or b"debug" in all_logs
