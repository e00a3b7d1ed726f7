"""Console script `pointex-sandbox-provider`: config, start, serve, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from pointex.server.config import ConfigError, SandboxConfig, sandbox_config
from pointex.server.grpc_edge.server import serve_until_signalled, stop_signal
from pointex.server.observability.logging import configure_logging
from pointex.server.payments.sandbox.server import create_server
from pointex.server.process import EXIT_CONFIG

PROGRAM = "pointex-sandbox-provider"


async def _serve(config: SandboxConfig) -> None:
    stop = stop_signal()  # Before the port is announced: see stop_signal.
    server = await create_server(config)
    print(f"pointex sandbox provider listening on port {server.port}", flush=True)  # noqa: T201
    await serve_until_signalled(
        stop, server.running, config.shutdown_grace_s, server.close, server.stopping
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox payment provider until it is signalled to stop."""
    try:
        config = sandbox_config(argv)
    except ConfigError as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)  # noqa: T201 - before logging exists.
        return EXIT_CONFIG
    configure_logging(config.log_level, config.log_format)
    asyncio.run(_serve(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
