"""The SDK's generated parts: the reasons table from errors.proto, the sync client from aio."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = Path("client") / "src" / "pointex" / "client"
ERRORS_PROTO = Path("protos") / "pointex" / "v1" / "errors.proto"


def _copy(tmp_path: Path, *paths: Path) -> Path:
    root = tmp_path / "project"
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, root / path)
    return root


def _check(script: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), "--check", "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_reasons_table_and_guide_are_fresh_and_a_proto_edit_makes_them_stale(
    tmp_path: Path,
) -> None:
    """The committed table matches errors.proto; a changed comment fails the check."""
    root = _copy(tmp_path, ERRORS_PROTO, CLIENT / "reasons.py", Path("docs") / "partners.md")
    assert _check("gen_reasons.py", root).returncode == 0
    proto = root / ERRORS_PROTO
    proto.write_text(proto.read_text().replace("The named market", "The given market"))
    result = _check("gen_reasons.py", root)
    assert result.returncode == 1
    assert "make proto" in result.stderr
    assert "reasons.py" in result.stderr
    assert "partners.md" in result.stderr


def test_sync_client_is_fresh_and_an_aio_edit_makes_it_stale(tmp_path: Path) -> None:
    """The blocking client is what the asyncio client generates; editing aio.py fails it."""
    root = _copy(tmp_path, CLIENT / "aio.py", CLIENT / "sync.py")
    assert _check("gen_sync_client.py", root).returncode == 0
    source = root / CLIENT / "aio.py"
    source.write_text(source.read_text().replace("page_size: int = 100", "page_size: int = 50"))
    result = _check("gen_sync_client.py", root)
    assert result.returncode == 1
    assert "make proto" in result.stderr


def test_quoted_snippets_are_fresh_and_an_example_edit_makes_them_stale(tmp_path: Path) -> None:
    """The guide quotes the tour exactly; changing the tour without `make docs` fails."""
    examples = sorted(p.relative_to(ROOT) for p in (ROOT / "examples").glob("*.py"))
    root = _copy(tmp_path, Path("docs") / "partners.md", *examples)
    assert _check("gen_snippets.py", root).returncode == 0
    tour = root / "examples" / "tour.py"
    tour.write_text(tour.read_text().replace('"coffee"', '"tea"'))
    result = _check("gen_snippets.py", root)
    assert result.returncode == 1
    assert "docs/partners.md" in result.stderr
    assert "make docs" in result.stderr
