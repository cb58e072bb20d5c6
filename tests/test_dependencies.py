"""Dependencies declared as used: every package the code imports is one its pyproject.toml
names, and no floor is below what the installed Locust itself requires of the same package.

Imports are read from the source (``ast``), every one of them, function-local ones included;
an import name is mapped to its distribution through the installed metadata
(``importlib.metadata.packages_distributions``), so the development venv must be installed.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
#: The product's sources: what the wheel and the image run.
PRODUCT = ("wirelab", "targets", "locustfiles", "dashboards")
#: Imports allowed in these files only, and the extra that must declare them: the Kubernetes
#: client on the orchestrator's path, the protobuf compiler in the script that regenerates
#: targets/proto.
OPTIONAL = {
    "kubernetes": (
        frozenset({"wirelab/lab/kubernetes.py", "wirelab/lab/kubernetes_retry.py"}),
        "kubernetes",
    ),
    "grpc_tools": (frozenset({"targets/proto/generate.py"}), "dev"),
}


def _pyproject(path: Path) -> dict:
    return tomllib.loads(path.read_text())["project"]


def _names(requirements: Iterable[str]) -> set[str]:
    return {canonicalize_name(Requirement(text).name) for text in requirements}


def _imports(roots: Iterable[str]) -> dict[str, set[str]]:
    """Top-level import name -> the files (relative to the checkout) that import it."""
    found: dict[str, set[str]] = {}
    for root in roots:
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    found.setdefault(module.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


def _third_party(imports: dict[str, set[str]], first_party: set[str]) -> dict[str, set[str]]:
    """Import name -> the distributions that install it, leaving out the standard library and
    the checkout's own packages. A name no installed distribution provides maps to nothing."""
    providers = importlib.metadata.packages_distributions()
    return {
        name: _names(providers.get(name, []))
        for name in imports
        if name not in sys.stdlib_module_names and name not in first_party
    }


def test_every_import_of_the_product_is_a_declared_dependency() -> None:
    project = _pyproject(REPO / "pyproject.toml")
    core = _names(project["dependencies"])
    extras = {name: _names(reqs) for name, reqs in project["optional-dependencies"].items()}
    imports = _imports(PRODUCT)
    wrong = {}
    for name, providers in _third_party(imports, {"wirelab"}).items():
        if name in OPTIONAL:
            only_in, extra = OPTIONAL[name]
            if not imports[name] <= only_in:
                wrong[name] = f"imported outside {sorted(only_in)}: {sorted(imports[name])}"
            elif not providers & extras.get(extra, set()):
                wrong[name] = f"not in the {extra!r} extra"
        elif not providers & core:
            wrong[name] = f"not in [project] dependencies, imported by {sorted(imports[name])}"
    assert wrong == {}, wrong


def test_every_import_of_the_benchmarks_is_declared_by_them_or_by_the_product() -> None:
    """wirelab-bench depends on wirelab from the same checkout, so what wirelab declares is
    declared for both; the rest is in benchmarks/pyproject.toml."""
    declared = _names(_pyproject(REPO / "benchmarks" / "pyproject.toml")["dependencies"])
    declared |= _names(_pyproject(REPO / "pyproject.toml")["dependencies"])
    imports = _imports(["benchmarks"])
    # sink_overhead.py starts its InfluxDB with the tests' fixture; a script may import a
    # sibling script (accept_rate.py drives fanout.py's subscribers).
    first_party = {"wirelab", "wirelab_bench", "tests"}
    first_party |= {path.stem for path in (REPO / "benchmarks").glob("*.py")}
    undeclared = {
        name: sorted(imports[name])
        for name, providers in _third_party(imports, first_party).items()
        if not providers & declared
    }
    assert undeclared == {}, f"imported, not declared: {undeclared}"


def _floor(requirement: Requirement) -> Version | None:
    """The lowest version a requirement admits (its highest ``>=``/``==``/``~=``/``>``)."""
    floors = [
        Version(spec.version)
        for spec in requirement.specifier
        if spec.operator in (">=", "==", "~=", ">")
    ]
    return max(floors, default=None)


def test_no_floor_is_lower_than_what_the_installed_locust_requires() -> None:
    project = _pyproject(REPO / "pyproject.toml")
    ours = [Requirement(text) for text in project["dependencies"]]
    for requirements in project["optional-dependencies"].values():
        ours += [Requirement(text) for text in requirements]
    ours += [
        Requirement(text)
        for text in _pyproject(REPO / "benchmarks" / "pyproject.toml")["dependencies"]
    ]
    by_name = {canonicalize_name(req.name): req for req in ours}
    lower = {}
    compared = 0
    for text in importlib.metadata.requires("locust") or []:
        theirs = Requirement(text)
        if theirs.marker is not None and not theirs.marker.evaluate({"extra": ""}):
            continue  # one of Locust's own extras, or another platform's
        mine = by_name.get(canonicalize_name(theirs.name))
        if mine is None or _floor(theirs) is None:
            continue
        compared += 1
        if _floor(mine) is None or _floor(mine) < _floor(theirs):
            lower[theirs.name] = f"ours {mine.specifier or 'none'}, Locust's {theirs.specifier}"
    assert lower == {}, lower
    # gevent, geventhttpclient, flask, flask-login, psutil, msgpack, pytest at least.
    assert compared >= 7
