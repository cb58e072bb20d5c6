"""The project's image, built from the Dockerfile by a real engine and looked at from inside.

The session builds it once (tests/fixtures/containers.py) on a stand-in for the Dockerfile's
base (debootstrap bookworm with Python 3.11: no registry is reachable here), handing the
machine's locally added CAs over as the ``EXTRA_CA_CERTS`` build argument: pip on these
machines reaches its index through a TLS-intercepting proxy, so the build succeeding at all is
the argument being accepted; the tests below check where that bundle went and where it did
not.
"""

from __future__ import annotations

import json

import pytest

from tests.container_engine import (
    Engine,
    build_image,
    local_ca_certificates,
)
from tests.fixtures.containers import Images

pytestmark = pytest.mark.timeout(900)  # the first test may wait for the session's images

RUNTIME_UID = 10001
#: What a build stage leaves that the runtime stage must not carry.
BUILD_LEFTOVERS = ("/src", "/tmp/build-ca.pem", "/root/.cache/pip", "/opt/venv/src")
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "make", "ld", "as")


def run_in_image(engine: Engine, image: str, script: str, *flags: str) -> str:
    result = engine.docker(
        "run", "--rm", "--network", "none", *flags, "--entrypoint", "sh", image, "-c", script
    )
    return result.stdout


def test_the_image_runs_as_its_numeric_non_root_user(engine: Engine, images: Images) -> None:
    config = json.loads(engine.docker("image", "inspect", images.wirelab).stdout)[0]["Config"]
    assert config["User"] == f"{RUNTIME_UID}:{RUNTIME_UID}"
    assert config["Entrypoint"] == ["wirelab"]
    assert run_in_image(engine, images.wirelab, "id -u; id -g").split() == [str(RUNTIME_UID)] * 2


def test_the_image_works_with_a_read_only_root_and_a_writable_tmp(
    engine: Engine, images: Images
) -> None:
    script = (
        "wirelab --version >/dev/null && echo runs; "
        "touch /opt/venv/x 2>/dev/null && echo root-writable || echo root-read-only; "
        "touch /tmp/x && echo tmp-writable; "
        "python -c 'import wirelab.targets.runner, wirelab.users, kubernetes' && echo imports"
    )
    seen = run_in_image(engine, images.wirelab, script, "--read-only", "--tmpfs", "/tmp")
    assert seen.split() == ["runs", "root-read-only", "tmp-writable", "imports"]


def test_the_runtime_stage_has_no_compilers_and_no_build_leftovers(
    engine: Engine, images: Images
) -> None:
    checks = " ".join(f"command -v {c};" for c in COMPILERS)
    leftovers = " ".join(f"test -e {p} && echo {p};" for p in BUILD_LEFTOVERS)
    seen = run_in_image(engine, images.wirelab, f"{checks} {leftovers} true")
    assert seen.split() == []
    headers = run_in_image(engine, images.wirelab, "ls /usr/include 2>/dev/null | head -1")
    assert headers.strip() == "", "C headers belong to the build stage"


def test_an_extra_ca_bundle_is_trusted_by_the_build_stage_and_left_out_of_the_image(
    engine: Engine, images: Images
) -> None:
    extra = local_ca_certificates()
    assert extra, "this machine has locally added CAs; the build could not reach pip without"
    first_cert = extra.split("-----END CERTIFICATE-----")[0].strip().splitlines()[1]
    # The same arguments as the session's build, stopped at the build stage: all cached.
    stage = build_image(engine, "wirelab-build-stage:test", target="build")
    bundle = run_in_image(engine, stage, "cat /tmp/build-ca.pem")
    assert first_cert in bundle
    # The base's public roots stay trusted beside the extra ones.
    assert bundle.count("BEGIN CERTIFICATE") > extra.count("BEGIN CERTIFICATE")
    history = engine.docker("history", "--no-trunc", images.wirelab).stdout
    assert first_cert not in history
    assert "EXTRA_CA_CERTS" not in history
    env = json.loads(engine.docker("image", "inspect", images.wirelab).stdout)[0]["Config"]["Env"]
    assert not [e for e in env if e.startswith(("PIP_CERT", "EXTRA_CA_CERTS", "PIP_INDEX_URL"))]


def test_the_image_size_is_reported(engine: Engine, images: Images) -> None:
    """Printed for the record (docs/container-tests.md); the goal is ~260 MB above the base."""
    added = images.wirelab_size_mb - images.base_size_mb
    print(
        f"\nimage {images.wirelab}: {images.wirelab_size_mb:.0f} MB, "
        f"base {images.base} (stand-in): {images.base_size_mb:.0f} MB, added {added:.0f} MB"
    )
    assert 0 < added <= 260, "the runtime stage grew past the goal: look at /opt/venv"
