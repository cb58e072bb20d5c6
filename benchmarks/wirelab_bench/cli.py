"""``wirelab-bench``: run the comparisons, repeat them, write JSON, Markdown and an HTML page.

    wirelab-bench [--quick] [--out DIR] [--repeat N]
                  [--only request,push,connections,peers,scaling,scale]
                  [--idle default|poll]

Exit codes: 0 the page was written (a part that failed is recorded in the JSON with its
error), 2 usage error.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import psutil

from wirelab.processes import sigterm_as_interrupt

from .claims import build_claims
from .connections import measure_connections
from .idle import shallow_idle
from .lab import cores, load_average
from .page import markdown, render_html
from .peers import measure_peers
from .push import measure_push
from .request import lower_bound, measure_request
from .scale import measure_scale
from .scaling import measure_scaling
from .speed import cpu_ticks, steal_summary, summarize_probes
from .speed import probe as speed_probe
from .stats import flatten_medians, reproducibility, summarize_runs

__all__ = ["PARTS", "PROG", "main", "settings_for"]

#: The command, as people type it (the console script of the ``wirelab-bench`` distribution).
PROG = "wirelab-bench"

PARTS = ("request", "push", "connections", "peers", "scaling", "scale")


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def settings_for(quick: bool) -> dict[str, dict[str, Any]]:
    """What each part runs; ``--quick`` finishes in a few minutes."""
    if quick:
        return {
            "request": {
                "rates": [200, 1000],
                "fixed_rate": 1000,
                "fixed_slices": 2,
                "duration": 3,
                "users": 32,
                "payload": 64,
                "bound_ms": 50,
            },
            "push": {"clients": 20, "feed_rate": 10, "payload": 64, "duration": 5},
            "push_quiet": None,
            "connections": {"counts": [1000], "hold": 2},
            "peers": {
                "connections": 16,
                "duration": 2,
                "rounds": 2,
                "delay_ms": 20,
                "delay_connections": 4,
            },
            "scaling": {"workers": [1, 2], "users": 64, "rate": 8000, "duration": 5, "rounds": 1},
            "scale": {"connections": 200, "spawn_rate": 200, "hold": 2},
        }
    return {
        "request": {
            "rates": [200, 500, 1000, 2000, 4000],
            # Latency and CPU per operation are compared at 1,000 req/s, not at the bottom
            # rung: at 200 req/s every request wakes an idle core, and CPU per request is
            # mostly the cost of that wake-up (0.18-0.30 ms for REST from one run to the
            # next, against 0.09-0.10 at 1,000).
            "fixed_rate": 1000,
            # Four 4 s slices at the fixed rate, interleaved with the other variants'.
            "fixed_slices": 4,
            "duration": 4,
            "users": 48,
            "payload": 64,
            "bound_ms": 50,
        },
        "push": {"clients": 50, "feed_rate": 10, "payload": 64, "duration": 12},
        # Polling waste is a matter of the event rate: one event per client every 5 s.
        "push_quiet": {
            "clients": 50,
            "feed_rate": 0.2,
            "payload": 64,
            "duration": 10,
            "mechanisms": ["short_poll", "long_poll"],
        },
        "connections": {"counts": [1000, 5000], "hold": 3},
        # Each tool twice for 3 s, in alternating rounds (the nginx comparison and the
        # WebSocket peers run 6 s).
        "peers": {
            "connections": 16,
            "duration": 3,
            "rounds": 2,
            "delay_ms": 20,
            "delay_connections": 4,
        },
        # Each worker count twice, in alternating rounds (1, 2, 8, then 8, 2, 1).
        "scaling": {"workers": [1, 2, 8], "users": 64, "rate": 8000, "duration": 8, "rounds": 2},
        # Idle WebSocket connections from wirelab and from Tsung, one after the other, to one
        # target process: 18,000 is what that process holds under a file limit of 20,000
        # (wirelab.capacity.target_max_connections). 500/s: that process accepted 540-570
        # handshakes/s from either tool when asked for 1,000 (its one core is the limit).
        "scale": {"connections": 18_000, "spawn_rate": 500, "hold": 5},
    }


def machine_info() -> dict[str, Any]:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": psutil.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "pinning": {"server": cores("server"), "generator": cores("generator")},
    }


def _strip_steps(figures: Any) -> Any:
    """The repetition without per-step or per-slice detail (kept in ``repetitions``)."""
    if isinstance(figures, dict):
        detail = ("steps", "slice_figures")
        return {k: _strip_steps(v) for k, v in figures.items() if k not in detail}
    return figures


def run_part(part: str, settings: dict[str, Any], workdir: Path) -> dict[str, Any]:
    if part == "request":
        return measure_request(workdir, **settings)
    if part in ("push", "push_quiet"):
        return measure_push(workdir, **settings)
    if part == "connections":
        return measure_connections(workdir, **settings)
    if part == "peers":
        return measure_peers(workdir, **settings)
    if part == "scaling":
        return measure_scaling(workdir, **settings)
    if part == "scale":
        return measure_scale(workdir, **settings)
    raise ValueError(part)


def _bad_counts(repeat: int, refine: int) -> str | None:
    """What is wrong with the repetition and halving counts, if anything."""
    if repeat < 1:
        return "--repeat must be at least 1"
    if refine < 0:
        return "--refine must be 0 or more"
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wirelab-bench`` console script (and ``make bench``)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs, one repetition: minutes")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("reports/bench"),
        help="where bench.json, results.md and index.html go (default reports/bench)",
    )
    parser.add_argument("--repeat", type=int, help="repetitions (default 1 with --quick, else 6)")
    parser.add_argument(
        "--only", default=",".join(PARTS), help="comma-separated parts: " + ",".join(PARTS)
    )
    parser.add_argument(
        "--idle",
        choices=("poll", "default"),
        default="default",
        help="default: leave the machine's CPU idle as it is; poll: hold a 0 µs CPU wake-up "
        "latency request for the run, so idle CPUs poll instead of halting (needs root; "
        "lower loopback latency, but on the VM the results were recorded on it made runs "
        "less reproducible, see wirelab_bench.idle)",
    )
    parser.add_argument(
        "--refine",
        type=int,
        default=0,
        metavar="N",
        help="halve the gap between the request ladder's last held rung and the first that "
        "was not N times (default 0: the doubling ladder; see benchmarks/README.md)",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite results.md and index.html from "
        "OUT/bench.json (after changing the page, without measuring again)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="DIR",
        help="only compare OUT/bench.json with "
        "DIR/bench.json: how far apart the headline figures of two runs are",
    )
    args = parser.parse_args(argv)
    if args.compare is not None:
        return _compare(args.out, args.compare)
    if args.render:
        report = json.loads((args.out / "bench.json").read_text())
        # The claims are derived from the repetitions: recomputed with today's rules.
        report["claims"] = build_claims(report["repetitions"])
        return _write_pages(report, args.out)
    wanted = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = [part for part in wanted if part not in PARTS]
    if unknown or not wanted:
        sys.stderr.write(f"{PROG}: unknown part(s) {unknown}; choose from {', '.join(PARTS)}\n")
        return 2
    # Six, not three: the host's speed for Python work moves within minutes, and two runs'
    # medians of three agreed within 15% on 74-83 of 88 figures, of six on 86 (README;
    # counted before ceilings that are lower bounds were left out).
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 6)
    bad = _bad_counts(repeat, args.refine)
    if bad:
        sys.stderr.write(f"{PROG}: {bad}\n")
        return 2
    settings = settings_for(args.quick)
    # Off by default: with it, two runs' ceilings followed the host's speed like a
    # closed-loop figure (3-25% apart; benchmarks/README.md, Earlier recorded runs).
    settings["request"]["refine"] = args.refine
    parts = [
        p
        for p in ("request", "push", "push_quiet", "connections", "peers", "scaling", "scale")
        if (p if p != "push_quiet" else "push") in wanted and settings.get(p)
    ]
    command = f"{PROG} " + " ".join(argv if argv is not None else sys.argv[1:])
    report: dict[str, Any] = {
        "command": command.strip(),
        "quick": args.quick,
        "repeat": repeat,
        "parts": parts,
        "machine": machine_info(),
        "settings": {p: settings[p] for p in parts},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": [],
        "speed": [],
        "cpu_ticks": [],
        "repetitions": [],
        "errors": [],
    }

    def note_load(label: str) -> None:
        report["load_average"].append(
            {"at": label, "time": round(time.time()), "load": load_average()}
        )
        report["cpu_ticks"].append({"at": label, "ticks": cpu_ticks()})
        if label.endswith(" start"):
            report["speed"].append({"at": label, "cores": speed_probe()})

    started = time.monotonic()
    # A cancelled bench unwinds through every `with Target(...)`: no target is left behind.
    sigterm_as_interrupt()
    try:
        with shallow_idle(args.idle == "poll") as idle:
            report["cpu_idle"] = idle
            _say(f"CPU idle: {idle['mode']} ({idle['reason']})")
            _measure(report, parts, repeat, settings, note_load)
    except KeyboardInterrupt:
        _say(f"{PROG}: interrupted; nothing written")
        return 130
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    reps = [_strip_steps(figures) for figures in report["repetitions"]]
    report["summary"] = {
        part: summarize_runs([rep[part] for rep in reps if part in rep]) for part in parts
    }
    report["speed_summary"] = summarize_probes([p["cores"] for p in report["speed"]])
    report["steal_summary"] = steal_summary(report["cpu_ticks"])
    report["claims"] = build_claims(report["repetitions"])
    args.out.mkdir(parents=True, exist_ok=True)
    # The figures first: a page that fails to render must not lose a twenty-minute run.
    (args.out / "bench.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    return _write_pages(report, args.out)


#: The figures of the tables, for comparing two runs.
HEADLINES = (
    "request.*.p50_ms", "request.*.p99_ms", "request.*.max_sustained_rps",
    "request.*.target_cpu_s_per_1k_ops", "request.*.bytes_per_op_*",
    "push.*.lag_p50_ms", "push.*.lag_p99_ms", "push.*.target_cpu_s_per_1k_events",
    "push.*.bytes_per_event_down", "push.*.bytes_per_event_up", "push*.wasted_pct",
    "connections.*.*.server_kb_per_conn", "connections.*.*.generator_kb_per_conn",
    "peers.throughput.*.rps", "peers.throughput.*.requests_per_cpu_s",
    "peers.relative.*.per_cpu_s_vs_plain_locust",
    "peers.added_latency.*.added_mean_ms", "peers.nginx.rest_over_nginx",
    "peers.ws.*.requests_per_cpu_s", "scaling.points.*.steady_rps",
    "scaling.points.*.worker_cpu_s_per_1k",
    "scale.*.kb_per_conn", "scale.*.cpu_ms_per_connect",
)  # fmt: skip


#: Closed-loop maximum throughput of single Python processes and what it costs per
#: CPU-second: these follow the machine's speed of the moment (see :mod:`.speed`), so the
#: comparison counts them apart from the figures the protocols are judged on.
MACHINE_BOUND = ("peers.throughput.*", "peers.ws.*", "scaling.points.*")

#: Below these differences two figures are the same measurement: bytes per event are counted
#: over a few seconds of traffic, where one keep-alive ping is a fraction of a byte per event.
RESOLUTION = {"*bytes_per_*": 1.0}


def _lower_bound_ceilings(first: dict[str, Any], second: dict[str, Any]) -> list[str]:
    """The ceiling keys that are lower bounds in both summaries (:func:`.request.lower_bound`):
    "≥ 1,000" and "≥ 2,000" are both true of the target, so they do not disagree, and how
    far apart they are measures the generator's speed, not the protocol's reproducibility."""
    both = first.get("request", {}).keys() & second.get("request", {}).keys()
    return [
        f"request.{variant}.max_sustained_rps"
        for variant in sorted(both)
        if lower_bound(first["request"][variant].get("limited_by"))
        and lower_bound(second["request"][variant].get("limited_by"))
    ]


def _compare(out: Path, other: Path) -> int:
    first = json.loads((out / "bench.json").read_text())
    second = json.loads((other / "bench.json").read_text())
    bounds = _lower_bound_ceilings(first["summary"], second["summary"])
    keys = [
        key
        for key in flatten_medians(first["summary"])
        if _matches(key, HEADLINES) and key not in bounds
    ]
    result = reproducibility(first["summary"], second["summary"], keys, resolution=RESOLUTION)
    # Kept with their difference, for the reader, outside the count.
    result["lower_bounds"] = reproducibility(first["summary"], second["summary"], bounds)["rows"]
    for row in result["lower_bounds"].values():
        del row["within"]
    result["first"], result["second"] = str(out), str(other)
    bound = [key for key in result["rows"] if _matches(key, MACHINE_BOUND)]
    result["machine_bound"] = {
        "keys": bound,
        "within": sum(1 for key in bound if result["rows"][key]["within"]),
    }
    result["cpu_idle"] = {
        str(out): (first.get("cpu_idle") or {}).get("mode", "default"),
        str(other): (second.get("cpu_idle") or {}).get("mode", "default"),
    }
    result["speed"] = {
        str(out): first.get("speed_summary"),
        str(other): second.get("speed_summary"),
    }
    result["steal"] = {
        str(out): first.get("steal_summary"),
        str(other): second.get("steal_summary"),
    }
    (out / "reproducibility.json").write_text(json.dumps(result, indent=1) + "\n")
    for key, row in result["rows"].items():
        mark = "" if row["within"] else "  <-- outside"
        _say(
            f"{key:<55} {row['first']:>12.4g} {row['second']:>12.4g} {row['diff_pct']:>7.1f}%{mark}"
        )
    for key, row in result["lower_bounds"].items():
        _say(
            f"{key:<55} {'≥ ' + format(row['first'], '.4g'):>12} "
            f"{'≥ ' + format(row['second'], '.4g'):>12}   lower bounds, not compared"
        )
    protocol_keys = len(result["rows"]) - len(bound)
    protocol_within = result["within"] - result["machine_bound"]["within"]
    _say(
        f"{result['within']} of {result['compared']} headline figures within "
        f"±{result['bound_pct']:g}% between {out} and {other}: {protocol_within} of "
        f"{protocol_keys} protocol figures, {result['machine_bound']['within']} of {len(bound)} "
        "closed-loop throughput figures (CPU-bound: they move with the machine's speed)"
    )
    if bounds:
        _say(
            f"not compared: {len(bounds)} ceiling(s) that the generator or the ladder's top "
            "rate ended in every repetition of both runs (lower bounds of the target's)"
        )
    if len(set(result["cpu_idle"].values())) > 1:
        _say(
            f"the two runs idled differently ({result['cpu_idle']}): latency and CPU per "
            "operation are not comparable between them"
        )
    for name, speed in result["speed"].items():
        if speed and speed.get("probes"):
            _say(
                f"core speed during {name}: {speed['median_ms']} ms of CPU per probe unit "
                f"(median of {speed['probes']} probes; fastest unit {speed['fastest_ms']}, "
                f"slowest {speed['slowest_ms']}: x{speed['slowest_over_fastest']})"
            )
    for name, steal in result["steal"].items():
        # Runs recorded before the bench read /proc/stat have no steal figures.
        if steal and steal.get("intervals"):
            _say(
                f"host steal during {name}: {steal['steal_pct']}% of the time the cores "
                f"wanted to run (most: {steal['worst_pct']}% in the part from "
                f"'{steal['worst_at']}')"
            )
    return 0


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def _write_pages(report: dict[str, Any], out: Path) -> int:
    text = markdown(report)
    (out / "results.md").write_text(text + "\n")
    (out / "index.html").write_text(render_html(report))
    _say(text)
    _say(f"written: {out}/bench.json, results.md, index.html ({report.get('elapsed_s')} s)")
    return 0


def _measure(
    report: dict[str, Any],
    parts: list[str],
    repeat: int,
    settings: dict[str, Any],
    note_load: Any,
) -> None:
    """Every repetition of every part, into ``report["repetitions"]``; a part that fails
    is recorded in ``report["errors"]`` and the run goes on."""
    with tempfile.TemporaryDirectory(prefix="wirelab-bench-") as tmp:
        workdir = Path(tmp)
        for index in range(repeat):
            figures: dict[str, Any] = {}
            for part in parts:
                note_load(f"rep {index + 1} {part} start")
                _say(
                    f"[{time.strftime('%H:%M:%S')}] repetition {index + 1}/{repeat}: {part} "
                    f"(load {load_average()[0]})"
                )
                try:
                    figures[part] = run_part(part, settings[part], workdir)
                except Exception as exc:
                    traceback.print_exc()
                    report["errors"].append(
                        {"repetition": index + 1, "part": part, "error": repr(exc)}
                    )
                if part.startswith("push"):
                    figures[f"{part}_settings"] = settings[part]
            note_load(f"rep {index + 1} end")
            report["repetitions"].append(figures)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
