"""Composition root of the query server: config in, running server out.

`create_server` is what `main()` and the tests call (tests with port 0). Nothing is
wired at import time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pointex.server.config import QueryConfig
from pointex.server.grpc_edge.auth import TokenTable
from pointex.server.grpc_edge.server import RunningServer, start_server

log = logging.getLogger(__name__)


@dataclass(slots=True)
class QueryServer:
    """The running query server and what it owns."""

    running: RunningServer

    @property
    def port(self) -> int:
        """Return the TCP port the server is bound to."""
        return self.running.port

    async def stop(self, grace_s: float) -> None:
        """Stop taking RPCs and let in-flight ones finish within `grace_s`."""
        await self.running.health.enter_graceful_shutdown()
        await self.running.server.stop(grace_s)
        await self.close()

    async def close(self) -> None:
        """Release what the server owns once gRPC has stopped."""


async def create_server(config: QueryConfig) -> QueryServer:
    """Start gRPC with every query-side service."""
    tokens = TokenTable.from_file(config.common.auth_tokens_file)
    running = await start_server(config.common, [], tokens)
    log.info(
        "query server listening",
        extra={"port": running.port, "command_target": config.command_target},
    )
    return QueryServer(running=running)
