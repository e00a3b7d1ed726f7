"""The stale-codegen check: it passes on the committed tree and fails after a proto edit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_protos.py"


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "protos", root / "protos")
    for package in ("v1", "sandbox/v1", "cluster/v1"):  # gen_protos.PACKAGE_DIRS
        source = ROOT / "client" / "src" / "pointex" / package
        shutil.copytree(source, root / "client" / "src" / "pointex" / package)
    return root


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_committed_generated_code_is_fresh(tmp_path: Path) -> None:
    """The generated code in the tree is exactly what `make proto` produces."""
    result = _check(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_proto_change_without_regeneration_fails(tmp_path: Path) -> None:
    """Adding a field to a proto without regenerating makes the check fail and name the file."""
    root = _copy_tree(tmp_path)
    proto = root / "protos" / "pointex" / "v1" / "common.proto"
    text = proto.read_text()
    proto.write_text(
        text.replace(
            "message Money {", "message Money {\n  // Added.\n  string added_field = 99;", 1
        )
    )
    result = _check(root)
    assert result.returncode == 1
    assert "stale: common_pb2.py" in result.stdout
