"""Console script `pointex-command-server`: config, bootstrap, serve, drain on SIGTERM."""

from __future__ import annotations

import gc
from collections.abc import Sequence

from pointex.server import limits
from pointex.server.command.bootstrap import create_server
from pointex.server.config import command_config
from pointex.server.process import run_server


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command server until it is signalled to stop."""
    # Objects from start-up (modules, tables) live for good: the collector never walks them.
    gc.freeze()
    gc.set_threshold(
        limits.gc_young_allocations_max,
        limits.gc_young_collections_max,
        limits.gc_middle_collections_max,
    )
    return run_server("command", command_config, create_server, argv)


if __name__ == "__main__":
    raise SystemExit(main())
