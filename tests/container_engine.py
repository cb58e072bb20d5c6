"""A real container engine for the tests: its own ``dockerd``, the base image, the project's image.

No image registry is reachable from these machines, so nothing is pulled:

- the Dockerfile's base (``python:3.11-slim-bookworm``) is stood in for by a Debian bookworm
  built with ``debootstrap`` (minbase plus python3, python3-venv and ca-certificates, and the
  ``python`` link the official image has), imported under the Dockerfile's own base name;
- the chart's Redis image is built from Debian's ``redis-server`` package on that base, under
  the chart's ``redis.image`` name;
- the project's image is built from the unchanged Dockerfile, with build arguments only: the
  machine's locally added CAs (``EXTRA_CA_CERTS``, pip here goes through a TLS-intercepting
  proxy) and its package index, when pip is configured with one.

The daemon is the machine's Debian ``docker.io`` engine, started with a socket, data root and
exec root of the session's own, no iptables and no default bridge, and stopped by its pid; the
machine's default socket is never used. What costs time across sessions (the debootstrap
rootfs, the Redis image) is cached per machine outside the checkout, keyed by its recipe: a
changed recipe builds anew (:func:`cache_dir`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from wirelab.processes import ManagedProcess

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
CHART = ROOT / "helm" / "wirelab"
REDIS_DOCKERFILE = Path(__file__).resolve().parent / "containers" / "redis.Dockerfile"

#: Debian's client of the same release as the engine (20.10, API 1.41); a newer client on
#: PATH would negotiate, but its BuildKit defaults differ from the classic builder's.
DOCKER_CLIENT = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
#: The debootstrap recipe of the stand-in base; part of its cache key.
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
#: What the official python image sets and the Dockerfile relies on (its PATH extends $PATH).
BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
#: Where locally added CAs live on Debian (update-ca-certificates merges them into the bundle).
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
_READY_TIMEOUT = 60.0
_BUILD_TIMEOUT = 900


class EngineError(RuntimeError):
    """The engine, or one of its commands, failed; the message holds its output."""


def base_image_name() -> str:
    """The base the Dockerfile builds from (every stage uses the same one)."""
    bases = {
        line.split()[1]
        for line in DOCKERFILE.read_text().splitlines()
        if line.upper().startswith("FROM ")
    }
    if len(bases) != 1:
        raise EngineError(f"the Dockerfile builds from several bases: {sorted(bases)}")
    return bases.pop()


def _values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def image_name() -> str:
    """The project's image as the chart names it by default (repository:appVersion)."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return f"{_values()['image']['repository']}:{chart['appVersion']}"


def redis_image_name() -> str:
    """The chart's Redis image (redis.image)."""
    redis = _values()["redis"]["image"]
    return f"{redis['repository']}:{redis['tag']}"


def cache_dir() -> Path:
    """Per machine, outside the checkout (CI clones afresh every run).

    ``WIRELAB_TEST_CACHE`` wins; root uses /var/cache/wirelab-tests, others the XDG cache.
    """
    if explicit := os.environ.get("WIRELAB_TEST_CACHE"):
        path = Path(explicit)
    elif os.geteuid() == 0:
        path = Path("/var/cache/wirelab-tests")
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wirelab-tests"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _recipe_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
    stdin: int | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
        stdin=stdin,
        check=False,
    )
    if check and result.returncode != 0:
        raise EngineError(
            f"{' '.join(map(str, argv))[:300]} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


@dataclass(frozen=True)
class Engine:
    """A running engine of the session's own, reached through ``socket`` only."""

    socket: Path
    workdir: Path

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def docker(
        self, *args: str | os.PathLike[str], timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker client against this engine; a failure raises with its output."""
        env = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"}
        # The machine's client configuration (credential helpers, contexts) stays out.
        env["DOCKER_CONFIG"] = str(self.workdir / "client")
        return _run(
            [DOCKER_CLIENT, "--host", self.host, *args], timeout=timeout, env=env, check=check
        )

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False).returncode == 0


@contextlib.contextmanager
def running_engine(workdir: Path) -> Iterator[Engine]:
    """Start ``dockerd`` with state of its own under ``workdir``; stop it by pid on exit.

    The exec root (which holds containerd's sockets) sits in a short temporary directory:
    unix socket paths are limited to 108 bytes and pytest's temporary paths are long.
    """
    for binary in (DOCKERD, DOCKER_CLIENT):
        if not Path(binary).exists():
            raise EngineError(
                f"component {binary} missing: run `make test` (installs it) "
                "or apt-get install docker.io"
            )
    exec_root = Path(tempfile.mkdtemp(prefix="wle", dir="/tmp"))
    socket = exec_root / "docker.sock"
    (workdir / "client").mkdir(parents=True, exist_ok=True)
    argv = [
        DOCKERD,
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--data-root", str(workdir / "data"),
        "--exec-root", str(exec_root / "x"),
        "--pidfile", str(exec_root / "dockerd.pid"),
        "--host", f"unix://{socket}",
    ]  # fmt: skip
    engine = Engine(socket=socket, workdir=workdir)
    process = ManagedProcess(argv, name="dockerd", log_path=workdir / "dockerd.log")
    try:
        with process:

            def answers() -> bool:
                return socket.exists() and engine.docker("info", check=False).returncode == 0

            process.wait_ready(answers, timeout=_READY_TIMEOUT)
            try:
                yield engine
            finally:
                # Containers first: dockerd's SIGTERM stops them too, but only within its
                # own shutdown timeout; removing them here waits for each.
                ids = engine.docker("ps", "-aq", check=False).stdout.split()
                if ids:
                    engine.docker("rm", "-f", *ids, check=False, timeout=120)
                process.stop(grace=30)
    finally:
        if not process.alive:
            # dockerd bind-mounts the host's network namespace into its exec root and leaves
            # the mount behind when it stops; without unmounting, nothing there can go.
            _unmount_under(exec_root)
        shutil.rmtree(exec_root, ignore_errors=True)
        # Layers of every image the session built: gigabytes that pytest would keep for
        # its last three sessions. What is worth keeping is in cache_dir().
        if not process.alive:
            shutil.rmtree(workdir / "data", ignore_errors=True)


def _unmount_under(directory: Path) -> None:
    """Unmount every mount point under ``directory`` (deepest first)."""
    prefix = f"{directory}/"
    points = [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(prefix)
    ]
    for point in sorted(points, key=len, reverse=True):
        _run(["umount", point], check=False)


# -- images ----------------------------------------------------------------------------------


def base_rootfs() -> Path:
    """The debootstrap rootfs as a tarball, built once per machine and recipe."""
    key = _recipe_key(BASE_SUITE, "minbase", *BASE_PACKAGES, "python-link")
    tarball = cache_dir() / f"base-{BASE_SUITE}-{key}.tar"
    if tarball.exists():
        return tarball
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise EngineError(
            "component debootstrap missing: run `make test` (installs it) "
            "or apt-get install debootstrap"
        )
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                BASE_SUITE,
                rootfs,
            ],
            timeout=_BUILD_TIMEOUT,
        )
        # The official image's `python`; the Dockerfile calls it by that name.
        (rootfs / "usr" / "bin" / "python").symlink_to("python3")
        # Package caches are not part of a slim image.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / leftover).glob("*"):
                if entry.is_file():
                    entry.unlink()
        partial = Path(tmp) / "base.tar"
        _run(["tar", "--numeric-owner", "-C", rootfs, "-cf", partial, "."], timeout=300)
        partial.rename(tarball)
    return tarball


def _base_key() -> str:
    return _recipe_key(BASE_SUITE, "minbase", *BASE_PACKAGES, "python-link", *BASE_CHANGES)


def import_base(engine: Engine) -> str:
    """The stand-in base under the Dockerfile's base name, the same image every session.

    Imported once from the rootfs and then saved: ``docker import`` stamps a new image id
    each time, and a loaded image keeps its id, so later sessions' builds can reuse layers
    built on it (:func:`build_image`).
    """
    name = base_image_name()
    if engine.has_image(name):
        return name
    saved = cache_dir() / f"base-image-{_base_key()}.tar"
    if not saved.exists():
        changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
        engine.docker("import", *changes, base_rootfs(), name, timeout=300)
        partial = saved.with_suffix(".partial")
        engine.docker("save", "--output", partial, name, timeout=300)
        partial.rename(saved)
        return name
    engine.docker("load", "--input", saved, timeout=300)
    return name


def build_redis_image(engine: Engine, *, cgroup_parent: str | None = None) -> str:
    """The chart's Redis image, from Debian's package on the base; cached as a saved image.

    ``cgroup_parent``: the cgroup the build's containers run under (see :func:`idle_cgroup`).
    """
    name = redis_image_name()
    if engine.has_image(name):
        return name
    key = _recipe_key(REDIS_DOCKERFILE.read_text(), _base_key(), name)
    saved = cache_dir() / f"redis-{key}.tar"
    if saved.exists():
        engine.docker("load", "--input", saved, timeout=300)
        return name
    import_base(engine)
    engine.docker(
        "build",
        "--network", "host",
        "--build-arg", f"BASE={base_image_name()}",
        *(["--cgroup-parent", cgroup_parent] if cgroup_parent else []),
        "--file", REDIS_DOCKERFILE,
        "--tag", name,
        REDIS_DOCKERFILE.parent,
        timeout=_BUILD_TIMEOUT,
    )  # fmt: skip
    partial = saved.with_suffix(".partial")
    engine.docker("save", "--output", partial, name, timeout=300)
    partial.rename(saved)
    return name


def local_ca_certificates() -> str:
    """The PEM text of the CAs added to this machine (empty when there are none)."""
    if not LOCAL_CA_DIR.is_dir():
        return ""
    return "".join(path.read_text() for path in sorted(LOCAL_CA_DIR.glob("**/*.crt")))


def pip_index_build_args() -> list[str]:
    """The host's pip index settings that a build can use (http/https, not local files)."""
    args: list[str] = []
    for variable, key in (
        ("PIP_INDEX_URL", "index-url"),
        ("PIP_EXTRA_INDEX_URL", "extra-index-url"),
    ):
        value = os.environ.get(variable) or _pip_config(key)
        urls = [url for url in value.split() if re.match(r"https?://", url)]
        if urls:
            args += ["--build-arg", f"{variable}={' '.join(urls)}"]
    return args


def _pip_config(key: str) -> str:
    result = subprocess.run(
        ["python3", "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    for line in result.stdout.splitlines():
        name, _, value = line.partition("=")
        if name.split(".", 1)[-1] == key:
            return value.strip().strip("'\"")
    return ""


def build_image(
    engine: Engine,
    tag: str | None = None,
    *,
    extra_ca: str | None = None,
    target: str | None = None,
    timeout: float = _BUILD_TIMEOUT,
    cgroup_parent: str | None = None,
) -> str:
    """Build the project's image from the repository's Dockerfile; return its tag.

    ``extra_ca`` is the PEM handed over as ``EXTRA_CA_CERTS`` (default: the machine's locally
    added CAs). ``target`` stops at that stage (the same arguments reuse the build's cache).
    Nothing else differs from a user's ``docker build``: the build stage of an earlier
    session, saved per machine, is only offered as ``--cache-from``, so the dependency layer
    is reused while the pins, pyproject.toml and the Dockerfile stay the same, and wirelab's
    own code is always built afresh. ``cgroup_parent``: where the build's containers run (see
    :func:`idle_cgroup`).
    """
    import_base(engine)
    tag = tag or image_name()
    ca = local_ca_certificates() if extra_ca is None else extra_ca
    args = [*(["--build-arg", f"EXTRA_CA_CERTS={ca}"] if ca else []), *pip_index_build_args()]
    key = _recipe_key(
        DOCKERFILE.read_text(),
        (ROOT / "constraints.txt").read_text(),
        (ROOT / "pyproject.toml").read_text(),
        _base_key(),
        *args,
    )
    cache_tag = f"wirelab-build-cache:{key}"
    saved = cache_dir() / f"build-stage-{key}.tar"
    if saved.exists() and not engine.has_image(cache_tag):
        engine.docker("load", "--input", saved, timeout=300)
    cache_from = ["--cache-from", cache_tag] if engine.has_image(cache_tag) else []

    def build(stage_tag: str, stage: str | None) -> None:
        engine.docker(
            "build",
            "--network", "host",
            *args,
            *cache_from,
            *(["--cgroup-parent", cgroup_parent] if cgroup_parent else []),
            *(["--target", stage] if stage else []),
            "--tag", stage_tag,
            ROOT,
            timeout=timeout,
        )  # fmt: skip

    build(tag, target)
    if not saved.exists():
        build(cache_tag, "build")  # every layer is in the engine's cache by now
        for stale in cache_dir().glob("build-stage-*.tar"):
            stale.unlink()
        partial = saved.with_suffix(".partial")
        engine.docker("save", "--output", partial, cache_tag, timeout=300)
        partial.rename(saved)
    return tag


# -- the least CPU weight, for work done while other tests run --------------------------------

#: cgroup v1's cpu hierarchy (these machines); absent on a v2-only host.
CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")
CGROUPS = CPU_CGROUPS.parent


def idle_cgroup(name: str) -> Path | None:
    """A cpu cgroup with the least weight (``cpu.shares`` 2 against the others' 1024).

    What runs in it gets a CPU only when nothing else wants one: under contention about
    0.2 % of what a default task gets. ``nice`` would not do: each process group the tests
    start is an autogroup of its own, and niceness only orders tasks within one. ``None``
    where there is no writable cgroup v1 cpu hierarchy.
    """
    path = CPU_CGROUPS / name
    try:
        path.mkdir(exist_ok=True)
        (path / "cpu.shares").write_text("2")
    except OSError:
        return None
    return path


def join_cgroup(path: Path) -> None:
    """Move the calling thread (and so everything it starts from now on) into ``path``."""
    (path / "tasks").write_text(str(threading.get_native_id()))


def leave_cgroup(path: Path) -> None:
    """Move every process still in ``path`` back to the root cpu cgroup."""
    for pid in (path / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):  # gone meanwhile
            (CPU_CGROUPS / "cgroup.procs").write_text(pid)


def remove_cgroup(name: str) -> None:
    """Remove ``name`` from every hierarchy (the engine creates it in each for its builds)."""
    for hierarchy in CGROUPS.iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        for directory, _, _ in os.walk(top, topdown=False):  # the deepest first
            with contextlib.suppress(OSError):
                Path(directory).rmdir()


def image_size_mb(engine: Engine, name: str) -> float:
    """The image's size as the engine reports it, in MB (10^6 bytes, as docker prints)."""
    return int(engine.docker("image", "inspect", "--format", "{{.Size}}", name).stdout) / 1e6
