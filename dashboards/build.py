"""Write (or check) the committed dashboard JSON: ``python -m dashboards.build [--check]``.

The JSON files sit directly in ``dashboards/`` because that is what Grafana's file provider
and the Helm chart's ConfigMaps load (``dashboards/*.json``); everything else here is the
code that writes them. ``--check`` exits 1 when a file differs from what the code makes, so
CI (and ``tests/test_dashboards.py``) catches a hand edit or a forgotten rebuild.

``--interval`` must match the runs' ``WIRELAB_INTERVAL`` (default 1 s): it is every panel's
minimum ``$__interval``, so per-interval counters never land in empty buckets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python dashboards/build.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "dashboards"  # so the relative imports below resolve

from . import deploy, generator, overview, protocols, streams
from .grafana import Dashboard

DIRECTORY = Path(__file__).resolve().parent
DEFAULT_INTERVAL = "1s"
#: The datasource uid that ``provisioning/datasources/wirelab.yaml`` creates; the dashboards'
#: ``DS`` variable preselects it and falls back to any InfluxDB datasource.
DEFAULT_DATASOURCE_UID = "wirelab-influxdb"

#: File name (without .json) → the module that builds it, in the order a reviewer reads them.
MODULES = {
    "overview": overview,
    "streams": streams,
    "deploy": deploy,
    "generator": generator,
    "protocols": protocols,
}


def dashboards() -> dict[str, Dashboard]:
    """Every dashboard model by file stem."""
    return {stem: module.dashboard() for stem, module in MODULES.items()}


def render(
    interval: str = DEFAULT_INTERVAL, datasource_uid: str = DEFAULT_DATASOURCE_UID
) -> dict[str, str]:
    """File name → the JSON text the build writes (stable key order, trailing newline)."""
    return {
        f"{stem}.json": json.dumps(
            model.to_json(interval=interval, datasource_uid=datasource_uid),
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
        for stem, model in dashboards().items()
    }


def stale_files(directory: Path = DIRECTORY, **options: str) -> list[str]:
    """Names of dashboard files that are missing or differ from what the code makes."""
    return [
        name
        for name, text in render(**options).items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    parser.add_argument("--out", type=Path, default=DIRECTORY, help="where to write the JSON")
    parser.add_argument(
        "--interval", default=DEFAULT_INTERVAL, help="runs' metrics interval, e.g. 1s, 5s"
    )
    parser.add_argument(
        "--datasource-uid",
        default=DEFAULT_DATASOURCE_UID,
        help="uid of the InfluxDB datasource to preselect",
    )
    args = parser.parse_args(argv)
    options = {"interval": args.interval, "datasource_uid": args.datasource_uid}
    if args.check:
        stale = stale_files(args.out, **options)
        for name in stale:
            print(f"{args.out / name} is out of date: run python -m dashboards.build")  # noqa: T201
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in render(**options).items():
        (args.out / name).write_text(text)
        print(f"wrote {args.out / name}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
