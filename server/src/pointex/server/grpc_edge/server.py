"""Build, start and stop a grpc.aio server the same way for both processes.

Every option is passed explicitly (message sizes, keepalive, concurrency), TLS and
mutual TLS come from configuration, and every server carries the standard health
service (`grpc.health.v1`) and server reflection.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection

from pointex.server import limits
from pointex.server.config import CommonConfig, TlsConfig
from pointex.server.grpc_edge.auth import TokenTable
from pointex.server.grpc_edge.forwarding import Forwarder, Routing
from pointex.server.grpc_edge.interceptors import EdgeInterceptor
from pointex.server.observability.metrics import Metrics

log = logging.getLogger(__name__)

# Adds a servicer to a server, e.g. `command_service_pb2_grpc.add_CommandServiceServicer_to_server`
# bound to its servicer.
Registrar = Callable[[grpc.aio.Server], None]


@dataclass(frozen=True, slots=True)
class Service:
    """A servicer to host: its full proto name (for health and reflection) and its registrar."""

    name: str
    register: Registrar


@dataclass(slots=True)
class RunningServer:
    """A started server, the port it bound and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health_aio.HealthServicer
    service_names: tuple[str, ...]
    metrics: Metrics | None = None
    metrics_port: int | None = None  # where /metrics is served, if it is
    tokens_watch: asyncio.Task[None] | None = None  # reads the tokens file again on change
    forwarder: Forwarder | None = None  # relays calls to their owner in a cluster

    def stop_forwarded_streams(self) -> None:
        """End the streams relayed to the cluster's other servers (the server is stopping)."""
        if self.forwarder is not None:
            self.forwarder.stop_streams()

    async def close_forwarding(self) -> None:
        """Close the channels to the cluster's other servers (after the gRPC server stopped)."""
        if self.forwarder is not None:
            await self.forwarder.close()

    def stop_watching(self) -> None:
        """Stop following the tokens file."""
        if self.tokens_watch is not None:
            self.tokens_watch.cancel()
            self.tokens_watch = None

    def close_metrics(self) -> None:
        """Stop serving /metrics (after the gRPC server stopped)."""
        if self.metrics is not None:
            self.metrics.close()

    async def set_serving(self, *, serving: bool) -> None:
        """Report every hosted service (and the server as a whole) as SERVING or NOT_SERVING."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names):
            await self.health.set(name, status)


def server_options() -> list[tuple[str, int]]:
    """Return the channel options every Pointex server is built with."""
    return [
        ("grpc.max_receive_message_length", limits.grpc_message_bytes_max),
        ("grpc.max_send_message_length", limits.grpc_message_bytes_max),
        ("grpc.max_metadata_size", limits.grpc_metadata_bytes_max),
        ("grpc.keepalive_time_ms", limits.grpc_keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", limits.grpc_keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", limits.grpc_ping_interval_ms_min),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.so_reuseport", 0),
    ]


def _credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(tls.private_key_pem, tls.cert_chain_pem)],
        root_certificates=tls.client_ca_pem,
        require_client_auth=tls.client_ca_pem is not None,
    )


async def start_server(
    common: CommonConfig,
    services: Sequence[Service],
    tokens: TokenTable | None,
    metrics: Metrics | None = None,
    routing: Routing | None = None,
) -> RunningServer:
    """Bind `common.listen`, host `services` plus health and reflection, and start serving.

    With `tokens`, every call but health and reflection must carry a valid bearer token.
    With `metrics`, every call is counted, and `/metrics` is served where
    `common.metrics_listen` says (if it says). With `routing`, the calls of its services
    go to the server it names (grpc_edge/forwarding.py) before anything else is done.
    """
    interceptor = EdgeInterceptor(tokens, metrics)
    forwarder = None if routing is None else Forwarder(routing, tokens, metrics)
    interceptors: tuple[grpc.aio.ServerInterceptor, ...] = (  # type: ignore[type-arg]
        (interceptor,) if forwarder is None else (forwarder, interceptor)
    )
    server = grpc.aio.server(
        options=server_options(),
        interceptors=interceptors,
        maximum_concurrent_rpcs=limits.grpc_concurrent_rpcs_max,
    )
    if metrics is not None:
        metrics.total(
            "pointex_partner_calls_shed_total",
            "calls refused because their partner had too many in flight",
            lambda: interceptor.admission.shed,
        )
    for service in services:
        service.register(server)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = tuple(service.name for service in services)
    reflection.enable_server_reflection(
        (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if common.tls is None:
        log.warning("serving without TLS", extra={"listen": common.listen})
        port = server.add_insecure_port(common.listen)
    else:
        port = server.add_secure_port(common.listen, _credentials(common.tls))
    await server.start()
    metrics_port = None
    if metrics is not None and common.metrics_listen:
        metrics_port = metrics.serve(common.metrics_listen)
    running = RunningServer(
        server=server,
        port=port,
        health=health_servicer,
        service_names=names,
        metrics=metrics,
        metrics_port=metrics_port,
        forwarder=forwarder,
    )
    if tokens is not None:
        running.tokens_watch = _follow_tokens(tokens, metrics)
    await running.set_serving(serving=True)
    return running


def _follow_tokens(tokens: TokenTable, metrics: Metrics | None) -> asyncio.Task[None] | None:
    """Count authentication failures, and read the tokens file again when it changes.

    The file is looked at every `tokens_reload_interval_ms`, and at once on SIGHUP.
    """
    if metrics is not None:
        metrics.total(
            "pointex_auth_failures_total",
            "calls whose bearer token was missing or not valid",
            lambda: tokens.failures,
        )
        metrics.total(
            "pointex_auth_rate_limited_total",
            "calls refused because their peer failed to authenticate too often",
            lambda: tokens.rate_limited,
        )
        metrics.total(
            "pointex_tokens_reloads_total",
            "times the tokens file was read again after it changed",
            lambda: tokens.reloads,
        )
    if tokens.path is None:
        return None
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGHUP, lambda: tokens.reload_if_changed(force=True)
    )

    async def follow() -> None:
        while True:
            await asyncio.sleep(limits.tokens_reload_interval_ms / 1000)
            tokens.reload_if_changed()

    return asyncio.create_task(follow(), name="tokens-file")


def stop_signal() -> asyncio.Event:
    """Return an event that SIGTERM or SIGINT sets.

    Install it before the server announces where it listens: a supervisor may signal the
    process as soon as it has read that line, and the default action would kill it undrained.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def serve_until_signalled(
    stop: asyncio.Event,
    running: RunningServer,
    grace_s: int,
    on_drained: Callable[[], Awaitable[None]],
    on_stopping: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve until `stop` is set, then drain: NOT_SERVING, stop with grace, `on_drained`.

    `on_stopping` runs once health is NOT_SERVING and before the grace period starts, so that
    long-lived streams can end at once (SHUTTING_DOWN) instead of holding the whole grace.
    """
    await stop.wait()
    log.info("shutting down", extra={"grace_s": grace_s})
    await running.health.enter_graceful_shutdown()
    if on_stopping is not None:
        await on_stopping()
    await running.server.stop(grace_s)
    running.stop_watching()
    await on_drained()
    log.info("stopped")
