"""Run user classes in one process for a bounded time and print what they measured (JSON).

Used by the tests and benchmarks, always in a child process of its own, because importing
Locust monkey-patches the whole interpreter with gevent (a test process must not be)::

    python -m wirelab.users.harness --locustfile locustfiles/ws.py --users 3 --duration 3 \\
        -- --ws-url ws://127.0.0.1:8082

Everything after ``--`` is parsed by Locust's own parser (wirelab's options included), as on
a ``locust`` command line. The output (last line of stdout) holds Locust's request stats by
``request_type``/``name``, wirelab's stream and request series as recorded (merged over every
delta anyone took during the run, the metrics plugin's included), the open-model schedulers'
counts, what the request events carried in their ``context`` (counted per name), the
process's CPU time, its RSS at the end of the run (users still connected) and its peak, the
garbage collector's passes while the users ran (count and longest, per generation), and
whatever the locustfile's ``harness_report()`` returns.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

_module: Any = None


def _load_classes(locustfile: str, names: list[str]) -> list[type]:
    from locust import User  # noqa: PLC0415 - gevent patching happens here, in the child

    spec = importlib.util.spec_from_file_location("harness_locustfile", locustfile)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {locustfile}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    global _module  # noqa: PLW0603 - the one locustfile this process runs
    _module = module
    found = {
        name: value
        for name, value in vars(module).items()
        if inspect.isclass(value) and issubclass(value, User) and not value.abstract
    }
    if names:
        missing = [name for name in names if name not in found]
        if missing:
            raise SystemExit(f"no user class {missing} in {locustfile} (has {sorted(found)})")
        return [found[name] for name in names]
    return list(found.values())


def run(args: argparse.Namespace, locust_args: list[str]) -> dict[str, Any]:
    import gevent  # noqa: PLC0415
    import locust  # noqa: PLC0415
    import psutil  # noqa: PLC0415
    from locust.argument_parser import get_parser  # noqa: PLC0415
    from locust.env import Environment  # noqa: PLC0415

    from wirelab.gc_pauses import GcPauses  # noqa: PLC0415
    from wirelab.metrics.recorder import Aggregate, recorder  # noqa: PLC0415

    classes = _load_classes(args.locustfile, args.user_class)
    options = get_parser().parse_args(args=["-f", args.locustfile, *locust_args])
    environment = Environment(
        user_classes=classes,
        events=locust.events,
        parsed_options=options,
        host=options.host,
        stop_timeout=0,
    )
    runner = environment.create_local_runner()
    locust.events.init.fire(environment=environment, runner=runner, web_ui=None)

    # Whoever takes a delta (the metrics plugin, or this harness at the end), it is kept.
    totals = Aggregate()
    process_recorder = recorder()
    take_delta = process_recorder.take_delta

    def spy() -> dict[str, Any]:
        delta = take_delta()
        totals.add("local", delta)
        return delta

    process_recorder.take_delta = spy  # type: ignore[method-assign]

    # What the request events carried in their context, counted per name (open-model
    # service times, empty polls, stream flags): the metrics plugin's inputs, checkable.
    contexts: dict[str, dict[str, int]] = {}

    def on_request(name: str, context: dict[str, Any] | None = None, **_: Any) -> None:
        seen = contexts.setdefault(name, {"events": 0})
        seen["events"] += 1
        for key, value in (context or {}).items():
            if value is not False and value is not None:
                seen[key] = seen.get(key, 0) + 1

    environment.events.request.add_listener(on_request)
    gc_pauses = GcPauses().install()
    cpu_before = time.process_time()
    started = time.monotonic()
    runner.start(args.users, spawn_rate=args.spawn_rate)
    gevent.sleep(args.duration)
    spawned = runner.user_count
    rss_kb = psutil.Process().memory_info().rss // 1024
    runner.quit()
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu_before
    gc_pauses.remove()
    spy()

    stats = {
        f"{entry.method} {entry.name}": {
            "request_type": entry.method,
            "name": entry.name,
            "count": entry.num_requests,
            "failures": entry.num_failures,
            "median_ms": entry.median_response_time,
            "avg_ms": entry.avg_response_time,
        }
        for entry in environment.stats.entries.values()
    }
    errors = [
        {"name": error.name, "error": str(error.error), "count": error.occurrences}
        for error in environment.stats.errors.values()
    ]
    schedulers = {
        cls.__name__: scheduler.stats()
        for cls, scheduler in getattr(environment, "wirelab_schedulers", {}).items()
    }
    return {
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_kb": rss_kb,
        "users": spawned,
        "gc": gc_pauses.summary(),
        "stats": stats,
        "errors": errors,
        "streams": {
            f"{protocol} {name}": series.to_wire()
            for (protocol, name), series in totals.streams.items()
        },
        "requests": {
            f"{protocol} {name}": {
                "count": series.count,
                "failures": series.failures,
                "dropped": series.dropped,
                "retried": series.retried,
            }
            for (protocol, name), series in totals.requests.items()
        },
        "schedulers": schedulers,
        "contexts": contexts,
        "extra": extra() if callable(extra := getattr(_module, "harness_report", None)) else None,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    locust_args: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, locust_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locustfile", required=True)
    parser.add_argument("--user-class", action="append", default=[])
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--spawn-rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = run(args, locust_args)
    text = json.dumps(result)
    if args.out is not None:
        args.out.write_text(text)
    print(text)  # noqa: T201 - the JSON report is this command's output
    return 0


if __name__ == "__main__":
    sys.exit(main())
