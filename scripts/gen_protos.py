"""Generate the Python modules and typed stubs of the pointex.v1 contract.

The same run generates pointex.sandbox.v1, the sandbox payment provider's own API, and
pointex.cluster.v1, what the command servers of a cluster ask each other.

Usage:
    python scripts/gen_protos.py           # regenerate client/src/pointex/*/v1 and v1/
    python scripts/gen_protos.py --check   # fail when the committed code is stale

The output is committed and never edited by hand. `--check` regenerates into a
temporary folder and compares byte for byte, so CI fails when a proto changed
without regeneration (or when generated code was edited).
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
# One folder per proto package; protoc writes each package's modules into its own.
PACKAGE_DIRS = (
    Path("pointex") / "v1",
    Path("pointex") / "sandbox" / "v1",
    Path("pointex") / "cluster" / "v1",
)
# Files in the generated folder that are not generated and must survive regeneration.
KEEP = {"py.typed", "__init__.py"}
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _plugin(name: str) -> Path:
    """Find a protoc plugin installed beside the running interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        sys.exit(f"{name} not found beside {sys.executable}: install the dev extra")
    return path


def generate(proto_root: Path, out_root: Path) -> None:
    """Run protoc over every .proto file under proto_root into out_root."""
    protos = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
    if not protos:
        sys.exit("no .proto files under protos/")
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={proto_root}",
        f"--proto_path={well_known}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    code = protoc.main(args)
    if code != 0:
        sys.exit(f"protoc failed with exit code {code}")


def _generated_files(folder: Path) -> dict[str, Path]:
    return {
        p.name: p
        for p in folder.glob("*")
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES) and p.name not in KEEP
    }


def regenerate(root: Path) -> None:
    """Replace the committed generated code with a fresh generation."""
    targets = [root / "client" / "src" / package for package in PACKAGE_DIRS]
    for target in targets:
        target.mkdir(parents=True, exist_ok=True)
        for stale in _generated_files(target).values():
            stale.unlink()
    generate(root / "protos", root / "client" / "src")
    for target in targets:
        print(f"generated {len(_generated_files(target))} files into {target.relative_to(root)}")


def check(root: Path) -> int:
    """Return 1 and name the differences when the committed code is stale."""
    problems: list[str] = []
    count = 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(root / "protos", Path(tmp))
        for package in PACKAGE_DIRS:
            fresh = _generated_files(Path(tmp) / package)
            committed = _generated_files(root / "client" / "src" / package)
            count += len(committed)
            problems += _differences(fresh, committed)
    if problems:
        print("generated code is stale; run `make proto` and commit:", *problems, sep="\n  ")
        return 1
    print(f"generated code is up to date ({count} files)")
    return 0


def _differences(fresh: dict[str, Path], committed: dict[str, Path]) -> list[str]:
    problems = [f"missing: {n}" for n in sorted(fresh.keys() - committed.keys())]
    problems += [f"not generated: {n}" for n in sorted(committed.keys() - fresh.keys())]
    problems += [
        f"stale: {n}"
        for n in sorted(fresh.keys() & committed.keys())
        if not filecmp.cmp(fresh[n], committed[n], shallow=False)
    ]
    return problems


def main() -> int:
    """Parse arguments and regenerate or check."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when committed code is stale")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="project root holding protos/ and client/src/"
    )
    args = parser.parse_args()
    if args.check:
        return check(args.root)
    regenerate(args.root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
