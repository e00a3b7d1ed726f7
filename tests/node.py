"""Node.js for the tests of the TypeScript SDK: find it, or fail (under CI) or skip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TS_DIST = ROOT / "sdks" / "typescript" / "dist"


def node_or_skip(built: Path) -> str:
    """Return the `node` executable once `built` (a compiled file) exists.

    Without Node or the build (`make install` and `make lint` run tsc), the test fails under
    CI=true, where both must be there, and is skipped elsewhere.
    """
    node = shutil.which("node")
    missing = ""
    if node is None:
        missing = "node is not installed"
    elif not built.is_file():
        missing = f"{built.relative_to(ROOT)} is not built: run `make install`"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (required in CI)")
        pytest.skip(missing)
    assert node is not None
    return node
