"""The `pointex` console script: check that the `cli` extra is installed, then run.

The SDK installs with grpcio and protobuf only. The command line also needs `rich` (tables
and colours) and `grpcio-health-checking` (`pointex status`), from the `cli` extra; without
them `pointex` says how to install them instead of failing with a traceback.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from typing import Final

from pointex.cli.errors import EXIT_USAGE

# Import name → distribution name, for each module the extra provides.
_EXTRA_MODULES: Final = {"rich": "rich", "grpc_health": "grpcio-health-checking"}


def missing_extra() -> list[str]:
    """Return the distributions of the `cli` extra that are not installed."""
    return [
        distribution
        for module, distribution in _EXTRA_MODULES.items()
        if importlib.util.find_spec(module) is None
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `pointex` with `argv` (default: the process's arguments); return the exit code."""
    missing = missing_extra()
    if missing:
        sys.stderr.write(
            f"pointex: the command line needs {', '.join(missing)}, from the 'cli' extra of "
            "the SDK. Install it with:\n    pip install 'pointex-client[cli]'\n"
        )
        return EXIT_USAGE
    # Imported only now: the modules behind `app` import the extra's packages at the top.
    from pointex.cli import app  # noqa: PLC0415

    return app.run(argv)
