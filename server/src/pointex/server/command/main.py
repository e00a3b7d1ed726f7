"""Console script `pointex-command-server`: config, bootstrap, serve, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from pointex.server.command.bootstrap import create_server
from pointex.server.config import CommandConfig, ConfigError, command_config
from pointex.server.eventstore.port import StoreError
from pointex.server.grpc_edge.auth import TokenFileError
from pointex.server.grpc_edge.server import serve_until_signalled, stop_signal
from pointex.server.observability.logging import configure_logging

log = logging.getLogger(__name__)

# Exit codes an operator (or a supervisor) can act on.
EXIT_CONFIG = 2
EXIT_STORE = 3


async def _serve(config: CommandConfig) -> None:
    stop = stop_signal()  # Before the port is announced: see stop_signal.
    server = await create_server(config)
    print(f"pointex command server listening on port {server.port}", flush=True)  # noqa: T201
    await serve_until_signalled(
        stop, server.running, config.common.shutdown_grace_s, server.close, server.stopping
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command server until it is signalled to stop."""
    try:
        config = command_config(argv)
    except ConfigError as error:
        print(f"pointex-command-server: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    configure_logging(config.common.log_level, config.common.log_format)
    try:
        asyncio.run(_serve(config))
    except TokenFileError as error:
        log.error("auth_tokens_file: %s", error)  # noqa: TRY400 - the cause is in the message.
        return EXIT_CONFIG
    except StoreError as error:
        log.error("event store refused: %s", error)  # noqa: TRY400 - the cause is in the message.
        return EXIT_STORE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
