"""The TypeScript SDK's own unit tests (node's test runner over its compiled tests) pass.

They cover what needs no server: position tokens, decoding ErrorInfo and RetryInfo, the
retry policy, resuming notifications, the generated reasons table and the callback
signature's test vector.
"""

from __future__ import annotations

import subprocess

from tests.node import ROOT, TS_DIST, node_or_skip

UNIT_TESTS = TS_DIST / "test" / "units.test.js"
NODE_TEST_TIMEOUT_S = 60


def test_the_typescript_sdk_unit_tests_pass() -> None:
    """`node --test` runs the SDK's unit tests and none fails."""
    node = node_or_skip(UNIT_TESTS)
    result = subprocess.run(
        [node, "--test", str(UNIT_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        timeout=NODE_TEST_TIMEOUT_S,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
