"""What ``pip install wirelab`` gets: the wheel built from this checkout, and what importing
the product loads.

The wheel is built for real (setuptools through ``pip wheel``) from a copy of the checkout,
so no stale ``build/`` directory of an earlier build can add or hide a file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: What a checkout holds beyond its sources: never part of a build's input.
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", ".tools", "build", "dist", "reports", "*.egg-info", "__pycache__",
    ".pytest_cache", ".ruff_cache", ".hypothesis",
)  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "checkout"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCES)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(work / "out"), str(source)],
        capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (path,) = (work / "out").glob("wirelab-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def _metadata(wheel: zipfile.ZipFile) -> Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return Parser().parsestr(wheel.read(name).decode())


@pytest.mark.timeout(180)
def test_the_wheel_holds_the_product_and_no_benchmark_code(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    tops = {name.split("/")[0] for name in names}
    # One import name in site-packages (targets/ installs as wirelab.targets), and metadata.
    assert {top for top in tops if not top.endswith(".dist-info")} == {"wirelab"}
    assert {"wirelab/cli.py", "wirelab/run.py", "wirelab/targets/rest.py"} <= set(names)
    assert "wirelab/scenarios/smoke.yaml" in names
    bench = [n for n in names if n.startswith(("wirelab/bench/", "wirelab_bench/", "benchmarks/"))]
    assert bench == [], bench
    assert not [n for n in names if n.startswith(("tests/", "wirelab/tests/"))]


@pytest.mark.timeout(180)
def test_the_kubernetes_client_is_an_extra_that_dev_includes(wheel: zipfile.ZipFile) -> None:
    metadata = _metadata(wheel)
    requires = metadata.get_all("Requires-Dist")
    assert "kubernetes" in metadata.get_all("Provides-Extra")
    core = [r for r in requires if "extra ==" not in r]
    assert not [r for r in core if r.lower().startswith("kubernetes")], core
    assert any(r.startswith("kubernetes>=") and 'extra == "kubernetes"' in r for r in requires)
    assert any(r.startswith("wirelab[kubernetes]") and 'extra == "dev"' in r for r in requires)


_IMPORT_EVERYTHING = """
import locust  # first, as in every wirelab process: it monkey-patches ssl before anything uses it
import importlib, json, pkgutil, sys
import wirelab, wirelab.targets
names = []
for package in (wirelab, wirelab.targets):
    for found in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if found.name.endswith(("__main__", ".generate")):
            continue  # scripts: running them is not importing the product
        importlib.import_module(found.name)
        names.append(found.name)
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"imported": names, "loaded": loaded}))
"""


@pytest.mark.timeout(120)
def test_importing_every_product_module_loads_neither_the_bench_nor_the_kubernetes_client():
    """The bench is a separate distribution and the Kubernetes client an extra: importing any
    module of the product (the Kubernetes orchestrator's own included) loads neither."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING],
        capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert "wirelab.lab.kubernetes" in found["imported"] and len(found["imported"]) > 50
    assert "wirelab_bench" not in found["loaded"]
    assert "kubernetes" not in found["loaded"]
