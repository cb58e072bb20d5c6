"""Children started under chosen file limits, so a test does not depend on this machine's."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import yaml

#: This machine's hard limit: a child may be started at or below it without privilege.
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

#: Sets its file limits, then becomes the command it is given (``argv[3:]``).
_LIMITED = (
    "import os, resource, sys\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def limited(argv: list[str], soft: int, hard: int = HARD) -> list[str]:
    """``argv`` run with these file limits (lowering the hard limit needs no privilege;
    raising it back would)."""
    return [sys.executable, "-c", _LIMITED, str(soft), str(hard), *argv]


def open_files_of(pid: int) -> tuple[int, int]:
    """The soft and hard file limits of a running process."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-files line for {pid}")


def run_limited(
    tmp_path: Path, scenario: dict[str, object], soft: int, hard: int, *, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``wirelab run`` of ``scenario`` (written to ``tmp_path``) under these file limits;
    the finished process and the report directory."""
    path = tmp_path / f"{scenario['name']}.yaml"
    path.write_text(yaml.safe_dump(scenario))
    reports = tmp_path / "reports"
    command = [sys.executable, "-m", "wirelab", "run", "--scenario", str(path),
               "--report-dir", str(reports), "--no-progress"]  # fmt: skip
    result = subprocess.run(
        limited(command, soft, hard), capture_output=True, text=True, timeout=timeout, check=False
    )
    return result, reports
