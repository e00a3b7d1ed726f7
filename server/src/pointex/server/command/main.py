"""Console script `pointex-command-server`: config, bootstrap, serve, drain on SIGTERM."""

from __future__ import annotations

from collections.abc import Sequence

from pointex.server.command.bootstrap import create_server
from pointex.server.config import command_config
from pointex.server.process import run_server


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command server until it is signalled to stop."""
    return run_server("command", command_config, create_server, argv)


if __name__ == "__main__":
    raise SystemExit(main())
