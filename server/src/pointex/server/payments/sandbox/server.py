"""Composition root of the sandbox payment provider: config in, running server out.

`create_server` is what `main()` and the tests call (tests with port 0). The server hosts
SandboxGatewayService, health and reflection; it serves without authentication, for
loopback or a private network only.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection

from pointex.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from pointex.server import limits
from pointex.server.config import SandboxConfig
from pointex.server.grpc_edge.interceptors import EdgeInterceptor
from pointex.server.grpc_edge.server import RunningServer, server_options
from pointex.server.payments.sandbox.gateway import Behaviour, CallbackSender, Gateway
from pointex.server.payments.sandbox.sandbox_servicer import SandboxGatewayServicer
from pointex.server.payments.sandbox.sender import GrpcCallbackSender

SERVICE_NAME = sandbox_pb2.DESCRIPTOR.services_by_name["SandboxGatewayService"].full_name


@dataclass(slots=True)
class SandboxServer:
    """The running sandbox provider and what it owns."""

    running: RunningServer
    gateway: Gateway
    drain_s: float

    @property
    def port(self) -> int:
        """Return the TCP port the server is bound to."""
        return self.running.port

    async def stopping(self) -> None:
        """Nothing streams, so there is nothing to end early."""

    async def close(self) -> None:
        """Deliver the callbacks already queued (within the grace period), then stop."""
        await self.gateway.drain(self.drain_s)

    async def stop(self, grace_s: float) -> None:
        """Stop taking RPCs, let in-flight ones finish within `grace_s`, drain deliveries."""
        await self.running.health.enter_graceful_shutdown()
        await self.running.server.stop(grace_s)
        await self.close()


def _sender(config: SandboxConfig) -> GrpcCallbackSender:
    return GrpcCallbackSender(
        target=config.command_target,
        provider_id=config.provider_id,
        key_id=config.key_id,
        secret=config.secret,
        token=config.callback_token,
    )


async def create_server(
    config: SandboxConfig, sender: CallbackSender | None = None
) -> SandboxServer:
    """Start the sandbox provider on `config.listen`; `sender` replaces the gRPC sender."""
    gateway = Gateway(
        Behaviour(
            delay_ms=config.delay_ms,
            failure_rate_bps=config.failure_rate_bps,
            duplicate_rate_bps=config.duplicate_rate_bps,
        ),
        sender if sender is not None else _sender(config),
    )
    server = grpc.aio.server(
        options=server_options(),
        interceptors=(EdgeInterceptor(None),),
        maximum_concurrent_rpcs=limits.grpc_concurrent_rpcs_max,
    )
    sandbox_pb2_grpc.add_SandboxGatewayServiceServicer_to_server(
        SandboxGatewayServicer(gateway), server
    )
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(config.listen)
    gateway.start()
    await server.start()
    running = RunningServer(
        server=server, port=port, health=health_servicer, service_names=(SERVICE_NAME,)
    )
    await running.set_serving(serving=True)
    return SandboxServer(running=running, gateway=gateway, drain_s=config.shutdown_grace_s)
