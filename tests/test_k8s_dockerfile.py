"""The Dockerfile and .dockerignore, checked structurally.

The image is built and run by a real engine in tests/test_containers_image.py; these tests
read the Dockerfile as a reviewer would and check what the chart relies on: a slim Python
3.11 base, a numeric non-root user equal to the chart's runAsUser, dependencies installed
from constraints.txt, the ``wirelab`` entry point, and paths the chart's commands use.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass

import yaml

from tests.k8s_tools import CHART, ROOT

DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Instruction:
    keyword: str
    argument: str
    stage: int


def instructions() -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped; stage 0 is first."""
    joined: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        pending += (
            " " + stripped.removesuffix("\\").strip()
            if pending
            else stripped.removesuffix("\\").strip()
        )
        if not stripped.endswith("\\"):
            joined.append(pending)
            pending = ""
    result, stage = [], -1
    for text in joined:
        keyword, _, argument = text.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        result.append(Instruction(keyword.upper(), argument.strip(), stage))
    return result


def final_stage() -> list[Instruction]:
    everything = instructions()
    last = max(i.stage for i in everything)
    return [i for i in everything if i.stage == last]


def test_every_stage_builds_from_python_3_11_slim():
    bases = [i.argument.split()[0] for i in instructions() if i.keyword == "FROM"]
    assert bases
    assert all(re.fullmatch(r"python:3\.11-slim(-\w+)?", base) for base in bases), bases


def test_the_image_runs_as_the_charts_numeric_non_root_user():
    users = [i.argument for i in final_stage() if i.keyword == "USER"]
    assert users, "the final stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "a numeric uid lets the kubelet verify runAsNonRoot"
    assert int(uid) != 0
    assert not gid or int(gid) != 0
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    # Nothing after USER switches back or runs as root.
    after = final_stage()[[i.keyword for i in final_stage()].index("USER") :]
    assert [i for i in after if i.keyword == "RUN"] == []


def test_dependencies_install_from_the_pinned_constraints():
    installs = [
        i.argument for i in instructions() if i.keyword == "RUN" and "pip install" in i.argument
    ]
    assert installs
    for command in installs:
        assert re.search(r"(--constraint|-c)\s+\S*constraints\.txt", command), command
    copied = [i.argument for i in instructions() if i.keyword == "COPY"]
    assert any(c.startswith("constraints.txt") for c in copied)
    # The chart's extra-package init container installs under the same pins.
    assert any(c.endswith("/opt/wirelab/constraints.txt") for c in copied)
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert "/opt/wirelab/constraints.txt" in helpers


def test_the_entrypoint_is_the_wirelab_console_script_in_exec_form():
    final = final_stage()
    (entrypoint,) = [json.loads(i.argument) for i in final if i.keyword == "ENTRYPOINT"]
    (cmd,) = [json.loads(i.argument) for i in final if i.keyword == "CMD"]
    assert entrypoint == ["wirelab"]
    assert cmd == ["--help"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "wirelab" in scripts
    env = " ".join(i.argument for i in final if i.keyword == "ENV")
    assert "PATH=/opt/venv/bin:$PATH" in env  # `wirelab` and `python` for the chart's commands


def test_no_healthcheck_because_kubernetes_probes_each_role():
    assert not [i for i in instructions() if i.keyword == "HEALTHCHECK"]
    assert "No HEALTHCHECK" in DOCKERFILE.read_text()


def test_every_copied_path_exists_and_passes_the_dockerignore():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore is an allow-list"

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            glob = pattern.removeprefix("!").rstrip("/")
            if fnmatch.fnmatch(path, glob) or path.startswith(glob + "/"):
                keep = negated
        return keep

    for instruction in final_stage() + instructions():
        if instruction.keyword != "COPY" or "--from=" in instruction.argument:
            continue
        *sources, _ = instruction.argument.split()
        for raw in sources:
            source = raw.rstrip("/")
            assert (ROOT / source).exists(), source
            assert included(source), f"{source} is excluded by .dockerignore"
    for excluded in (".venv", ".git", ".tools", "tests", "reports", "helm"):
        assert not included(excluded), excluded


def test_the_build_context_holds_what_pip_needs_to_build_wirelab():
    copied = {
        source.rstrip("/")
        for i in instructions()
        if i.keyword == "COPY" and "--from=" not in i.argument
        for source in i.argument.split()[:-1]
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["readme"] in copied
    package_dirs = set(project["tool"]["setuptools"]["package-dir"].values())
    assert package_dirs <= copied
