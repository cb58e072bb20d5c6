"""``wirelab demo``: bring up the local lab, show every target answering, summarise.

Until the Locust side lands, the "load" is the built-in smoke client; the shape stays:
start the targets as their own process group, run, print a summary, write a report,
stop exactly what was started.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .cli import EXIT_INCOMPLETE, EXIT_OK, EXIT_THRESHOLD_FAILED, PROTOCOL_ORDER
from .probes import target_ready
from .processes import ManagedProcess, free_ports
from .smoke import ProtocolResult, run_smoke

HOST = "127.0.0.1"


def _format_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_summary(results: list[ProtocolResult]) -> str:
    """A fixed-width table a person can read at a glance."""
    header = (
        f"{'protocol':<9}{'requests':>9}{'fail':>6}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'events':>8}{'missing':>9}{'dup':>5}{'lag p50 ms':>12}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        row = result.to_dict()
        lines.append(
            f"{result.protocol:<9}{result.requests:>9}{result.failures:>6}"
            f"{_format_ms(row['p50_ms']):>9}{_format_ms(row['p99_ms']):>9}"
            f"{result.feed.delivered:>8}{result.feed.missing:>9}{result.feed.duplicates:>5}"
            f"{_format_ms(row['lag_p50_ms']):>12}"
        )
        if result.error:
            lines.append(f"  {result.protocol}: {result.error}")
    return "\n".join(lines)


def run_demo(*, duration: float, port_base: int = 0, report_dir: Path | None = None) -> int:
    """Start all four targets, smoke them for ``duration`` s, print and save a summary."""
    ports = (
        dict(zip(PROTOCOL_ORDER, free_ports(len(PROTOCOL_ORDER), HOST), strict=True))
        if port_base == 0
        else {name: port_base + index for index, name in enumerate(PROTOCOL_ORDER)}
    )
    report_dir = report_dir or Path("reports") / time.strftime("demo-%Y%m%d-%H%M%S")
    report_dir.mkdir(parents=True, exist_ok=True)
    log_path = report_dir / "targets.log"
    argv = [
        sys.executable,
        "-m",
        "wirelab",
        "targets",
        "serve",
        *PROTOCOL_ORDER,
        "--host",
        HOST,
        "--ports",
        ",".join(f"{name}={port}" for name, port in ports.items()),
        "--rate",
        "20",
    ]
    print(f"starting targets: {', '.join(f'{n}:{p}' for n, p in ports.items())}")
    with ManagedProcess(argv, name="targets", log_path=log_path) as targets:
        try:
            targets.wait_ready(
                lambda: all(target_ready(HOST, name, port) for name, port in ports.items()),
                timeout=30,
            )
        except RuntimeError as exc:
            print(f"wirelab demo: targets did not become ready: {exc}", file=sys.stderr)
            return EXIT_INCOMPLETE
        print(f"targets ready; smoke-testing every protocol for {duration:g}s ...")
        results = run_smoke(HOST, ports, duration)
    summary = {"ports": ports, "duration_s": duration, "protocols": [r.to_dict() for r in results]}
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print(format_summary(results))
    print(f"\nreport: {report_dir / 'summary.json'}  (target log: {log_path})")
    healthy = all(
        r.error is None and r.failures == 0 and r.feed.missing == 0 and r.feed.delivered > 0
        for r in results
    )
    return EXIT_OK if healthy else EXIT_THRESHOLD_FAILED
