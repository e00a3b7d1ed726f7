"""Console script `pointex-query-server`: config, bootstrap, serve, drain on SIGTERM."""

from __future__ import annotations

from collections.abc import Sequence

from pointex.server.config import query_config
from pointex.server.process import run_server
from pointex.server.query.bootstrap import create_server


def main(argv: Sequence[str] | None = None) -> int:
    """Run the query server until it is signalled to stop."""
    return run_server("query", query_config, create_server, argv)


if __name__ == "__main__":
    raise SystemExit(main())
