"""The dependency locks: fresh, exact, hashed, consistent, and what is installed."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "lock.py"
LOCKS = ("dev", "server", "client")
# A requirement line of a lock: `name==version [; marker] \`, then its hash lines.
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)(?: ; (?P<marker>[^\\]+))? \\$")


def _copy_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "client").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(ROOT / "client" / "pyproject.toml", root / "client" / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", root / "requirements")
    return root


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )


def _pins(name: str) -> list[tuple[str, str, str | None, list[str]]]:
    """Parse a lock into (package, version, marker, hashes), failing on any other line."""
    pins: list[tuple[str, str, str | None, list[str]]] = []
    for line in (ROOT / "requirements" / f"{name}.lock").read_text().splitlines():
        if not line or line.lstrip().startswith("#"):
            continue
        if line.startswith("    --hash=sha256:"):
            pins[-1][3].append(line.split(":", 1)[1].rstrip(" \\"))
            continue
        match = PIN.match(line)
        assert match, f"{name}.lock: not an exact pin: {line!r}"
        marker = match["marker"].strip() if match["marker"] else None
        pins.append((canonicalize_name(match["name"]), match["version"], marker, []))
    return pins


def _applies(marker: str | None) -> bool:
    return marker is None or Marker(marker).evaluate()


def test_committed_locks_are_fresh(tmp_path: Path) -> None:
    """The locks in the tree match both pyproject.toml files and the .in files."""
    result = _check(_copy_project(tmp_path))
    assert result.returncode == 0, result.stderr


def test_a_range_edited_without_make_lock_fails_with_one_line_naming_the_fix(
    tmp_path: Path,
) -> None:
    """Narrowing a dependency's range without `make lock` fails the check in one line."""
    root = _copy_project(tmp_path)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    assert '"asyncpg>=0.29,<1"' in text
    pyproject.write_text(text.replace('"asyncpg>=0.29,<1"', '"asyncpg>=0.30,<1"'))
    result = _check(root)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "requirements/dev.lock" in lines[0]
    assert "make lock" in lines[0]


def test_an_sdk_dependency_edit_also_makes_the_locks_stale(tmp_path: Path) -> None:
    """The client's pyproject.toml is an input as well: adding a dependency there is caught."""
    root = _copy_project(tmp_path)
    pyproject = root / "client" / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('"grpcio>=1.66,<2",', '"grpcio>=1.66,<2",\n    "six",', 1))
    assert _check(root).returncode == 1


def test_settings_that_do_not_decide_dependencies_leave_the_locks_fresh(tmp_path: Path) -> None:
    """A change to the linter's settings is not a dependency change and needs no relock."""
    root = _copy_project(tmp_path)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("line-length = 100", "line-length = 99"))
    assert _check(root).returncode == 0


def test_every_lock_pins_exact_versions_with_hashes() -> None:
    """Each locked package names one version and at least one sha256 hash."""
    for name in LOCKS:
        pins = _pins(name)
        assert pins, name
        for package, version, _, hashes in pins:
            assert hashes, f"{name}.lock: {package}=={version} has no hash"
            assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in hashes)


def test_the_server_and_client_locks_agree_with_the_dev_lock() -> None:
    """A package in several locks has the same version in each, and the SDK lock is small."""
    dev = {(p, m): v for p, v, m, _ in _pins("dev")}
    for name in ("server", "client"):
        for package, version, marker, _ in _pins(name):
            assert dev.get((package, marker)) == version, f"{name}.lock: {package}"
    client = {package for package, _, _, _ in _pins("client")}
    assert "asyncpg" not in client
    assert {"grpcio", "protobuf", "googleapis-common-protos"} <= client


def test_the_running_environment_is_installed_from_the_dev_lock() -> None:
    """Every package the dev lock pins for this platform is installed at exactly that version."""
    mismatched = []
    for package, version, marker, _ in _pins("dev"):
        if not _applies(marker):
            continue
        installed = importlib.metadata.version(package)
        if installed != version:
            mismatched.append(f"{package}: locked {version}, installed {installed}")
    assert not mismatched, "run `make install`: " + "; ".join(mismatched)
