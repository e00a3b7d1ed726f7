"""Generate the TypeScript SDK's code from the protobuf contract, with buf and buf.gen.yaml.

Usage:
    python scripts/gen_typescript.py           # regenerate sdks/typescript/src/gen/
    python scripts/gen_typescript.py --check   # fail when the committed code is stale

buf and its local plugin protoc-gen-es come from node_modules/ (package.json pins them,
`npm ci` installs them), so every machine generates with the same versions. The output is
committed and never edited by hand. `--check` generates into a temporary folder and
compares byte for byte, so CI fails when a proto changed without regeneration (or when
generated code was edited).
"""

from __future__ import annotations

import argparse
import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path("buf.gen.yaml")
GENERATED = Path("sdks") / "typescript" / "src" / "gen"
TOOLS = Path("node_modules") / ".bin"
# buf over a handful of files takes well under a second; this only bounds a hung process.
GENERATE_TIMEOUT_S = 120


def generate(root: Path, output: Path | None = None) -> None:
    """Run `buf generate` with the project's template, writing under `output` (or `root`)."""
    buf = root / TOOLS / "buf"
    for tool in (buf, root / TOOLS / "protoc-gen-es"):
        if not tool.exists():
            sys.exit(f"{tool.relative_to(root)} not found: run `make install` (npm ci)")
    command = [str(buf), "generate", "--template", str(TEMPLATE)]
    if output is not None:
        command += ["--output", str(output)]
    # buf.gen.yaml names the plugin by its path under node_modules/, relative to the root.
    result = subprocess.run(
        command,
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=GENERATE_TIMEOUT_S,
    )
    if result.returncode != 0:
        sys.exit(f"buf generate failed (exit {result.returncode}):\n{result.stderr}")


def _files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file()}


def _differences(fresh: dict[str, Path], committed: dict[str, Path]) -> list[str]:
    problems = [f"missing {name}" for name in sorted(fresh.keys() - committed.keys())]
    problems += [f"not generated {name}" for name in sorted(committed.keys() - fresh.keys())]
    problems += [
        f"stale {name}"
        for name in sorted(fresh.keys() & committed.keys())
        if not filecmp.cmp(fresh[name], committed[name], shallow=False)
    ]
    return problems


def check(root: Path) -> None:
    """Exit with one line naming the stale files when the committed code differs."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(root, Path(tmp))
        fresh = _files(Path(tmp) / GENERATED)
        committed = _files(root / GENERATED)
        problems = _differences(fresh, committed)
    if problems:
        listed = "; ".join(problems)
        sys.exit(f"stale generated TypeScript in {GENERATED} ({listed}): run `make proto`")
    print(f"generated TypeScript is up to date ({len(committed)} files)")


def main() -> None:
    """Regenerate, or check, the TypeScript SDK's generated code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when committed code is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="project root (for tests)")
    args = parser.parse_args()
    if args.check:
        check(args.root)
        return
    generate(args.root)
    print(f"generated {len(_files(args.root / GENERATED))} files into {GENERATED}")


if __name__ == "__main__":
    main()
