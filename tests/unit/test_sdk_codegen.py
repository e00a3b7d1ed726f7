"""The SDKs' generated parts: reasons tables, the sync client, TypeScript code, doc snippets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = Path("client") / "src" / "pointex" / "client"
TS_SDK = Path("sdks") / "typescript"
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
    """The committed tables match errors.proto; a changed comment fails the check."""
    root = _copy(
        tmp_path,
        ERRORS_PROTO,
        CLIENT / "reasons.py",
        TS_SDK / "src" / "reasons.ts",
        Path("docs") / "partners.md",
    )
    assert _check("gen_reasons.py", root).returncode == 0
    proto = root / ERRORS_PROTO
    proto.write_text(proto.read_text().replace("The named market", "The given market"))
    result = _check("gen_reasons.py", root)
    assert result.returncode == 1
    assert "make proto" in result.stderr
    assert "reasons.py" in result.stderr
    assert "reasons.ts" in result.stderr
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
    """The guide quotes the tours exactly; changing one without `make docs` fails."""
    examples = sorted(p.relative_to(ROOT) for p in (ROOT / "examples").glob("*.py"))
    examples += sorted(p.relative_to(ROOT) for p in (ROOT / TS_SDK / "examples").glob("*.ts"))
    root = _copy(tmp_path, Path("docs") / "partners.md", *examples)
    assert _check("gen_snippets.py", root).returncode == 0
    tour = root / "examples" / "tour.py"
    tour.write_text(tour.read_text().replace('"coffee"', '"tea"'))
    result = _check("gen_snippets.py", root)
    assert result.returncode == 1
    assert "docs/partners.md" in result.stderr
    assert "make docs" in result.stderr


def test_typescript_tour_edits_make_the_guide_stale(tmp_path: Path) -> None:
    """Changing a TypeScript snippet's source without `make docs` fails the check too."""
    tour = TS_SDK / "examples" / "tour.ts"
    root = _copy(tmp_path, Path("docs") / "partners.md", tour, *_python_examples())
    assert _check("gen_snippets.py", root).returncode == 0
    (root / tour).write_text((root / tour).read_text().replace('"coffee"', '"tea"'))
    result = _check("gen_snippets.py", root)
    assert result.returncode == 1
    assert "make docs" in result.stderr


def _python_examples() -> list[Path]:
    return sorted(p.relative_to(ROOT) for p in (ROOT / "examples").glob("*.py"))


def _with_node_tools(tmp_path: Path) -> Path:
    """Copy the contract, the buf files and the generated TypeScript; link node_modules."""
    tools = ROOT / "node_modules" / ".bin"
    if not (tools / "buf").exists() or not (tools / "protoc-gen-es").exists():
        message = "node_modules lacks buf or protoc-gen-es: run `make install`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path / "project"
    shutil.copytree(ROOT / "protos", root / "protos")
    generated = TS_SDK / "src" / "gen"
    shutil.copytree(ROOT / generated, root / generated)
    for name in ("buf.yaml", "buf.gen.yaml"):
        shutil.copy(ROOT / name, root / name)
    (root / "node_modules").symlink_to(ROOT / "node_modules")
    return root


def test_generated_typescript_is_fresh_and_a_proto_edit_makes_it_stale(tmp_path: Path) -> None:
    """Buf regenerates the committed TypeScript exactly; a new field without it fails."""
    root = _with_node_tools(tmp_path)
    fresh = _check("gen_typescript.py", root)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    proto = root / "protos" / "pointex" / "v1" / "common.proto"
    proto.write_text(
        proto.read_text().replace(
            "message Money {", "message Money {\n  // Added.\n  string added_field = 99;", 1
        )
    )
    result = _check("gen_typescript.py", root)
    assert result.returncode == 1
    assert "stale pointex/v1/common_pb.ts" in result.stderr
    assert "make proto" in result.stderr
