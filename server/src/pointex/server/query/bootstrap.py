"""Composition root of the query server: config in, running server out.

`create_server` is what `main()` and the tests call (tests with port 0). It opens the read
store (migrating it), starts gRPC, and only then starts following the command server's
EventFeed from the store's checkpoint. Nothing is wired at import time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pointex.server.config import QueryConfig
from pointex.server.grpc_edge.auth import TokenTable
from pointex.server.grpc_edge.server import RunningServer, Service, start_server
from pointex.server.observability.metrics import Metrics
from pointex.server.query.checkpoint import CheckpointWatch
from pointex.server.query.feed_subscriber import FeedClient, FeedState, FeedSubscriber
from pointex.server.query.notifications import NotificationStreams
from pointex.server.query.projector import Projector
from pointex.server.query.query_servicer import QueryServicer
from pointex.server.query.readstore.factory import open_read_store
from pointex.server.query.readstore.port import ReadStore
from pointex.server.query.rebuild import Rebuilder
from pointex.server.query.tokens import TokenCodec
from pointex.v1 import query_service_pb2, query_service_pb2_grpc

log = logging.getLogger(__name__)


@dataclass(slots=True)
class QueryServer:
    """The running query server and what it owns."""

    running: RunningServer
    store: ReadStore
    watch: CheckpointWatch
    subscriber: FeedSubscriber
    rebuilder: Rebuilder
    exit_code: int = 0  # The query server stops only when signalled.

    @property
    def port(self) -> int:
        """Return the TCP port the server is bound to."""
        return self.running.port

    def halt_with(self, stop: asyncio.Event) -> None:
        """Never set `stop`: the query server stops only when signalled."""

    async def stop(self, grace_s: float) -> None:
        """Stop taking RPCs, end streams, let in-flight calls finish within `grace_s`."""
        await self.running.health.enter_graceful_shutdown()
        await self.stopping()
        await self.running.server.stop(grace_s)
        self.running.close_metrics()
        await self.close()

    async def stopping(self) -> None:
        """End notification streams and waits at once (SHUTTING_DOWN) instead of at the grace."""
        self.watch.close()

    async def close(self) -> None:
        """Stop following the feed and rebuilding, then close the read store."""
        self.watch.close()
        await self.rebuilder.stop()
        await self.subscriber.stop()
        await self.store.close()


async def create_server(config: QueryConfig) -> QueryServer:
    """Open the read store, start gRPC with QueryService, then follow the EventFeed."""
    tokens = TokenTable.from_file(config.common.auth_tokens_file)
    store = open_read_store(config.read_store_url)
    await store.open()
    try:
        watch = CheckpointWatch(await store.checkpoint())
        projector = Projector(store, watch)
        codec = TokenCodec(await store.token_secret())
        feed_state = FeedState()
        rebuilder = Rebuilder(
            store,
            projector,
            watch,
            FeedClient(config.command_target, config.feed_token, config.feed_tls),
            feed_state,
        )
        servicer = QueryServicer(
            store, watch, codec, NotificationStreams(store, watch, codec), rebuilder, feed_state
        )
        service = Service(
            query_service_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name,
            lambda server: query_service_pb2_grpc.add_QueryServiceServicer_to_server(
                servicer, server
            ),
        )
        metrics = Metrics("query")
        metrics.gauge(
            "pointex_projection_position",
            "Global position the projections have reached.",
            lambda: watch.position,
        )
        metrics.gauge(
            "pointex_feed_head_position",
            "Latest head position the command server's feed reported.",
            lambda: feed_state.head,
        )
        metrics.gauge(
            "pointex_projection_lag_events",
            "Events committed but not yet projected (feed head minus projection position).",
            lambda: max(feed_state.head - watch.position, 0),
        )
        running = await start_server(config.common, [service], tokens, metrics)
    except BaseException:
        await store.close()
        raise
    # NOT_SERVING until the command server accepts the subscription.
    await running.set_serving(serving=False)

    async def report_health(connected: bool) -> None:  # noqa: FBT001 - a callback.
        await running.set_serving(serving=connected)

    subscriber = FeedSubscriber(
        FeedClient(config.command_target, config.feed_token, config.feed_tls),
        projector,
        watch,
        feed_state,
        report_health,
    )
    subscriber.start()
    log.info(
        "query server listening",
        extra={"port": running.port, "command_target": config.command_target},
    )
    return QueryServer(running, store, watch, subscriber, rebuilder)
