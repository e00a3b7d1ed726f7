"""Format generated Python as the project's linter and formatter want it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def formatted(source: str, filename: Path, fixes: tuple[str, ...] = ("I",)) -> str:
    """Return `source` with ruff's `fixes` applied and formatted, so lint and --check agree."""
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        sys.exit(f"ruff not found beside {sys.executable}: run `make install` first")
    fix = [str(ruff), "check", "--fix", "--unsafe-fixes", "--exit-zero", "--quiet"]
    fix += [f"--select={','.join(fixes)}", f"--stdin-filename={filename}", "-"]
    fixed = subprocess.run(fix, input=source, capture_output=True, text=True, check=True, cwd=ROOT)
    form = [str(ruff), "format", f"--stdin-filename={filename}", "-"]
    result = subprocess.run(
        form, input=fixed.stdout, capture_output=True, text=True, check=True, cwd=ROOT
    )
    return result.stdout
