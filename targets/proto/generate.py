"""Regenerate the Python code for ``wirelab.proto``, or check that the checked-in code is fresh.

    python -m wirelab.targets.proto.generate          # rewrite wirelab_pb2*.py(i) in place
    python -m wirelab.targets.proto.generate --check  # exit 1 if they differ from a fresh run

Import paths: protoc writes imports between generated modules from the path a ``.proto`` file
has *on the include path*. Compiled as plain ``wirelab.proto``, the gRPC module would say
``import wirelab_pb2``, which only works with ``targets/proto`` itself on ``sys.path``. So the
include path maps a virtual directory equal to the installed package path onto this folder
(``-Iwirelab/targets/proto=<this folder>``): protoc then sees ``wirelab/targets/proto/
wirelab.proto`` and writes ``from wirelab.targets.proto import wirelab_pb2``, with no text
rewriting afterwards. The same virtual path is the file's name in the protobuf descriptor pool
(and in server reflection), and it is what another ``.proto`` would ``import``.

The output depends on the grpcio-tools version (it embeds protoc's and grpcio's versions and
the generated code refuses to load on older runtimes), so ``--check`` is only meaningful with
the grpcio-tools version pinned for development.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TextIO

#: This folder, where the .proto lives and the generated code is checked in.
PROTO_DIR = Path(__file__).resolve().parent
#: The installed import path of this folder, as a protoc virtual directory.
VIRTUAL_DIR = "wirelab/targets/proto"
PROTO_FILE = "wirelab.proto"
GENERATED = ("wirelab_pb2.py", "wirelab_pb2.pyi", "wirelab_pb2_grpc.py")


class GenerateError(Exception):
    """protoc is missing or rejected the .proto file."""


def generate(out_dir: Path) -> dict[str, Path]:
    """Run protoc on ``wirelab.proto`` into ``out_dir``; return the generated files by name."""
    try:
        from grpc_tools import protoc  # noqa: PLC0415 - a dev-only dependency
    except ImportError as exc:
        raise GenerateError(
            "grpcio-tools is not installed: pip install -e '.[dev]' (it provides protoc)"
        ) from exc
    # protoc's own include directory, so that google/protobuf/*.proto imports resolve.
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{VIRTUAL_DIR}={PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_DIR / PROTO_FILE),
    ]
    status = protoc.main(args)
    if status != 0:
        raise GenerateError(f"protoc failed with status {status} (its message is above)")
    produced = out_dir / VIRTUAL_DIR
    files = {name: produced / name for name in GENERATED}
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise GenerateError(f"protoc did not produce {', '.join(missing)}")
    return files


def stale_files(fresh: dict[str, Path], checked_in: Path = PROTO_DIR) -> list[str]:
    """Names of the generated files whose checked-in copy is missing or differs from ``fresh``."""
    stale = []
    for name, path in fresh.items():
        current = checked_in / name
        if not current.is_file() or current.read_bytes() != path.read_bytes():
            stale.append(name)
    return stale


def _diff(fresh: Path, current: Path) -> str:
    if not current.is_file():
        return f"missing: {current}\n"
    old = current.read_text().splitlines(keepends=True)
    new = fresh.read_text().splitlines(keepends=True)
    lines = list(
        difflib.unified_diff(old, new, f"checked-in/{current.name}", f"fresh/{fresh.name}")
    )
    return "".join(lines[:40]) + ("  ...\n" if len(lines) > 40 else "")


def _say(text: str, stream: TextIO = sys.stdout) -> None:
    stream.write(text if text.endswith("\n") else text + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wirelab.targets.proto.generate", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temporary directory; exit 1 if the checked-in files differ",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wirelab-proto-") as tmp:
        try:
            fresh = generate(Path(tmp))
        except GenerateError as exc:
            _say(f"generate: error: {exc}", sys.stderr)
            return 2
        stale = stale_files(fresh)
        if args.check:
            if not stale:
                _say(f"generated code is up to date ({', '.join(GENERATED)})")
                return 0
            for name in stale:
                _say(_diff(fresh[name], PROTO_DIR / name), sys.stderr)
            _say(
                f"stale generated code: {', '.join(stale)}; "
                "run `python -m wirelab.targets.proto.generate` and commit the result",
                sys.stderr,
            )
            return 1
        for name, path in fresh.items():
            shutil.copyfile(path, PROTO_DIR / name)
        _say(f"wrote {', '.join(GENERATED)} to {PROTO_DIR} ({len(stale)} changed)")
        return 0


if __name__ == "__main__":
    sys.exit(main())
