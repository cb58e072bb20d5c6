"""Write docs/configuration.md from the option tables the code itself uses.

Every option of a run (``wirelab/run_options.py``), of the users (``wirelab/users/options.py``,
which Locust also shows), of the cluster roles, of the reference targets (their argparse
parser) and every scenario key (the scenario schema) has one line of why where it is defined;
this page is those lines, so it cannot drift from the code. ``make docs`` rewrites it and
``tests/test_configuration_reference.py`` fails while the committed page differs.

    python scripts/configuration_reference.py > docs/configuration.md
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from wirelab.cli import build_parser
from wirelab.run_options import CLUSTER_SETTINGS, RUN_OPTIONS
from wirelab.scenarios import json_schema
from wirelab.users.options import OPTIONS


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _run_options() -> list[str]:
    lines = [
        "## `wirelab run` and `wirelab up`, and the chart's master",
        "",
        "The same options as flags and, for the cluster roles (`wirelab cluster master|ui|"
        "worker`, which the chart runs), as environment variables.",
        "",
        "| flag | variable | what |",
        "|---|---|---|",
    ]
    for option in RUN_OPTIONS:
        env = f"`{option.env}`" if option.env else "— (the local lab only)"
        lines.append(f"| `{option.flag}` | {env} | {_cell(option.help)} |")
    lines += [
        "",
        "The cluster roles' own variables:",
        "",
        "| variable | what |",
        "|---|---|",
    ]
    for name, (_, _, why) in CLUSTER_SETTINGS.items():
        lines.append(f"| `{name}` | {_cell(why)} |")
    return lines


def _user_options() -> list[str]:
    lines = [
        "## The users' options",
        "",
        "Read by every wirelab user class, in `wirelab run` (which sets the variables), in the "
        "chart's pods and with plain `locust -f` (where they are also flags, in `locust "
        "--help`).",
        "",
        "| flag | variable | default | what |",
        "|---|---|---|---|",
    ]
    for option in OPTIONS:
        default = f"`{option.default}`" if option.default is not None else ""
        lines.append(f"| `{option.flag}` | `{option.env}` | {default} | {_cell(option.help)} |")
    return lines


def _subparser(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = actions[0].choices[name]
    return parser


def _target_options() -> list[str]:
    serve = _subparser(build_parser(), "targets", "serve")
    lines = [
        "## `wirelab targets serve`",
        "",
        "| option | default | what |",
        "|---|---|---|",
    ]
    for action in serve._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
        default = action.default
        unset = default is None or default is False or default in ("", argparse.SUPPRESS)
        shown = "" if unset else f"`{default}`"
        # argparse help doubles % for its own formatting.
        lines.append(f"| {flags} | {shown} | {_cell((action.help or '').replace('%%', '%'))} |")
    return lines


def _schema_rows(schema: dict[str, Any], node: dict[str, Any], prefix: str) -> list[str]:
    rows = []
    for key, given in node.get("properties", {}).items():
        spec = given
        if "$ref" in given:
            target = schema["$defs"][given["$ref"].rsplit("/", 1)[-1]]
            spec = {**target, **{k: v for k, v in given.items() if k != "$ref"}}
        description = spec.get("description", "")
        default = spec.get("default")
        shown = "" if default is None or default in ({}, [], "") else f"`{default}`"
        rows.append(f"| `{prefix}{key}` | {shown} | {_cell(description)} |")
        if "properties" in spec:
            rows += _schema_rows(schema, spec, f"{prefix}{key}.")
    return rows


def _scenario_keys() -> list[str]:
    schema = json_schema()
    return [
        "## Scenario files",
        "",
        "YAML or TOML; `wirelab scenarios --schema` prints the JSON Schema these rows come "
        "from (for editors). Durations, rates and sizes take the units of "
        "[runs.md](runs.md#units).",
        "",
        "| key | default | what |",
        "|---|---|---|",
        *_schema_rows(schema, schema, ""),
    ]


def render() -> str:
    """The whole page."""
    parts = [
        "# Configuration reference",
        "",
        "Generated from the code by `scripts/configuration_reference.py` (`make docs`): every "
        "option, variable and scenario key, with its one line of why. Do not edit by hand.",
        "",
        *_run_options(),
        "",
        *_user_options(),
        "",
        *_scenario_keys(),
        "",
        *_target_options(),
        "",
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
