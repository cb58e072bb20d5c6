"""docs/configuration.md is generated from the code's option tables and must match them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_configuration_reference_is_what_the_code_generates_now() -> None:
    generated = subprocess.run(
        [sys.executable, "scripts/configuration_reference.py"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert generated == committed, "docs/configuration.md is stale: run `make docs`"
    # Every option of every table is there, by its flag or its variable.
    for needle in ("--source-addresses", "WIRELAB_RUN_WORKERS", "`feed.rate`", "`--reuse-port`"):
        assert needle in committed, needle
