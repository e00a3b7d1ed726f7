"""Exit codes, and the one kind of failure the command line raises itself.

Exit codes: 0 success; 1 the server refused the command (or `audit` found violations);
2 the command line is wrong (argparse uses 2 as well); 3 a server could not be reached.
Failed calls are the SDK's typed errors (`pointex.client.errors`).
"""

from __future__ import annotations

from typing import Final

from pointex.client.errors import PointexError

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3


class UsageError(Exception):
    """The command line asks for something that cannot be done (exit code 2)."""


def exit_code(error: PointexError) -> int:
    """Return the process exit code a failed call ends a command with."""
    return EXIT_UNREACHABLE if error.unreachable else EXIT_REFUSED
