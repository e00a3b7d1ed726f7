"""The sandbox payment provider against a fake command server, both on port 0 over gRPC.

The fake implements only ConfirmPayment and FailPayment: it records every callback it
receives, checks its signature with the real CallbackVerifier, and answers as scripted.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pointex.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from pointex.server.config import SandboxConfig
from pointex.server.payments.port import (
    PaymentRequest,
    PaymentRequestRefused,
    ProviderUnavailable,
)
from pointex.server.payments.sandbox.server import SandboxServer, create_server
from pointex.server.payments.sandbox_client import SandboxProvider
from pointex.server.payments.verification import (
    CallbackVerifier,
    ProviderSecret,
    ProviderSecrets,
)
from pointex.v1 import command_service_pb2, common_pb2

WAIT_S = 10
SLOW_DELAY_MS = 600_000  # Longer than any test: the payment settles only through SettlePayment.


@dataclass(frozen=True, slots=True)
class Received:
    """One callback as the fake command server saw it."""

    method: str
    request_id: str
    callback: command_service_pb2.PaymentCallback
    at_s: float
    verified: bool


@dataclass(slots=True)
class FakeCommandService:
    """ConfirmPayment and FailPayment only: record, verify, answer as scripted."""

    verifier: CallbackVerifier
    provider_id: str
    token: str
    received: list[Received] = field(default_factory=list)
    # Codes to answer with, first to last, before answering OK.
    script: list[grpc.StatusCode] = field(default_factory=list)
    seen_events: set[str] = field(default_factory=set)

    async def ConfirmPayment(  # noqa: N802 - the RPC's name.
        self, request: command_service_pb2.ConfirmPaymentRequest, context: Any
    ) -> command_service_pb2.ConfirmPaymentResponse:
        """Record a confirmation."""
        duplicate = await self._handle("ConfirmPayment", request, context)
        return command_service_pb2.ConfirmPaymentResponse(
            trade_id=request.callback.trade_id,
            trade_status=common_pb2.TRADE_STATUS_SETTLED,
            duplicate=duplicate,
        )

    async def FailPayment(  # noqa: N802 - the RPC's name.
        self, request: command_service_pb2.FailPaymentRequest, context: Any
    ) -> command_service_pb2.FailPaymentResponse:
        """Record a failure."""
        duplicate = await self._handle("FailPayment", request, context)
        return command_service_pb2.FailPaymentResponse(
            trade_id=request.callback.trade_id,
            trade_status=common_pb2.TRADE_STATUS_CANCELLED,
            duplicate=duplicate,
        )

    async def _handle(self, method: str, request: Any, context: Any) -> bool:
        metadata = dict(context.invocation_metadata())
        assert metadata.get("authorization") == f"Bearer {self.token}"
        try:
            self.verifier.check(
                request.callback, caller_provider_id=self.provider_id, now_unix_s=int(time.time())
            )
            verified = True
        except Exception:  # noqa: BLE001 - recorded, and asserted by the tests.
            verified = False
        self.received.append(
            Received(method, request.request_id, request.callback, time.monotonic(), verified)
        )
        if self.script:
            await context.abort(self.script.pop(0), "scripted failure")
        event_id = request.callback.provider_event_id
        duplicate = event_id in self.seen_events
        self.seen_events.add(event_id)
        return duplicate

    async def wait_for(self, count: int) -> list[Received]:
        """Return the received callbacks once there are `count` of them."""
        deadline = time.monotonic() + WAIT_S
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} callbacks"
            await asyncio.sleep(0.01)
        return list(self.received)


def _handlers(service: FakeCommandService) -> grpc.GenericRpcHandler[Any, Any]:
    """Serve only the two payment callbacks of pointex.v1.CommandService."""
    pb = command_service_pb2
    return grpc.method_handlers_generic_handler(
        "pointex.v1.CommandService",
        {
            "ConfirmPayment": grpc.unary_unary_rpc_method_handler(
                service.ConfirmPayment,
                request_deserializer=pb.ConfirmPaymentRequest.FromString,
                response_serializer=pb.ConfirmPaymentResponse.SerializeToString,
            ),
            "FailPayment": grpc.unary_unary_rpc_method_handler(
                service.FailPayment,
                request_deserializer=pb.FailPaymentRequest.FromString,
                response_serializer=pb.FailPaymentResponse.SerializeToString,
            ),
        },
    )


@dataclass(frozen=True, slots=True)
class Identity:
    """The sandbox's random provider id, key, secret and token for one test."""

    provider_id: str = field(default_factory=lambda: f"sbx-{secrets.token_hex(4)}")
    key_id: str = field(default_factory=lambda: f"k-{secrets.token_hex(4)}")
    secret: bytes = field(default_factory=lambda: secrets.token_urlsafe(32).encode())
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))


@pytest.fixture
def identity() -> Identity:
    """A fresh provider identity."""
    return Identity()


@pytest.fixture
async def command(identity: Identity) -> AsyncIterator[tuple[FakeCommandService, int]]:
    """The fake command server on a free port."""
    secrets_ = ProviderSecrets(
        identity.provider_id, (ProviderSecret(identity.key_id, identity.secret),)
    )
    service = FakeCommandService(
        CallbackVerifier({identity.provider_id: secrets_}, window_s=300),
        identity.provider_id,
        identity.token,
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handlers(service),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield service, port
    await server.stop(0)


StartSandbox = Callable[..., Awaitable[SandboxServer]]


@pytest.fixture
async def start_sandbox(
    identity: Identity, command: tuple[FakeCommandService, int]
) -> AsyncIterator[StartSandbox]:
    """Start sandbox providers calling the fake command server; each stops after the test."""
    started: list[SandboxServer] = []

    async def start(
        delay_ms: int = 0, failure_bps: int = 0, duplicate_bps: int = 0
    ) -> SandboxServer:
        config = SandboxConfig(
            listen="127.0.0.1:0",
            command_target=f"127.0.0.1:{command[1]}",
            provider_id=identity.provider_id,
            key_id=identity.key_id,
            secret=identity.secret,
            callback_token=identity.token,
            delay_ms=delay_ms,
            failure_rate_bps=failure_bps,
            duplicate_rate_bps=duplicate_bps,
            shutdown_grace_s=5,
            log_level="INFO",
            log_format="text",
        )
        server = await create_server(config)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(0)


@pytest.fixture
def fake(command: tuple[FakeCommandService, int]) -> FakeCommandService:
    """The fake command server's recorder."""
    return command[0]


async def _stub(
    server: SandboxServer,
) -> tuple[grpc.aio.Channel, sandbox_pb2_grpc.SandboxGatewayServiceAsyncStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    return channel, sandbox_pb2_grpc.SandboxGatewayServiceStub(channel)


def _create_request(amount_minor: int = 12_550) -> sandbox_pb2.CreatePaymentRequest:
    return sandbox_pb2.CreatePaymentRequest(
        trade_id=f"T-{secrets.token_hex(6)}",
        amount_minor=amount_minor,
        currency="CNY",
        buyer_account_id=f"buyer-{secrets.token_hex(4)}",
    )


async def test_callback_arrives_signed_after_the_delay(
    start_sandbox: StartSandbox, fake: FakeCommandService, identity: Identity
) -> None:
    """A created payment is confirmed after the configured delay by a correctly signed callback."""
    server = await start_sandbox(delay_ms=300)
    channel, stub = await _stub(server)
    request = _create_request()
    started_s = time.monotonic()
    reply = await stub.CreatePayment(request, timeout=WAIT_S)
    [received] = await fake.wait_for(1)
    await channel.close(grace=None)
    assert received.at_s - started_s >= 0.3
    assert received.verified
    assert received.method == "ConfirmPayment"
    callback = received.callback
    assert callback.payment_id == reply.payment_id
    assert callback.trade_id == request.trade_id
    assert callback.provider_id == identity.provider_id
    assert callback.key_id == identity.key_id
    assert (callback.amount.amount_minor, callback.amount.currency) == (12_550, "CNY")
    assert received.request_id == callback.provider_event_id
    assert reply.created
    assert reply.checkout_url.endswith(reply.payment_id)


@pytest.mark.parametrize(
    ("failure_bps", "method"), [(0, "ConfirmPayment"), (10_000, "FailPayment")]
)
async def test_failure_rate_decides_every_outcome(
    start_sandbox: StartSandbox, fake: FakeCommandService, failure_bps: int, method: str
) -> None:
    """At 0 bps every payment is confirmed; at 10000 bps every payment fails."""
    server = await start_sandbox(failure_bps=failure_bps)
    channel, stub = await _stub(server)
    for _ in range(5):
        await stub.CreatePayment(_create_request(), timeout=WAIT_S)
    received = await fake.wait_for(5)
    await channel.close(grace=None)
    assert {r.method for r in received} == {method}
    assert all(r.verified for r in received)
    assert len({r.callback.provider_event_id for r in received}) == 5


async def test_redelivery_after_unavailable(
    start_sandbox: StartSandbox, fake: FakeCommandService
) -> None:
    """After UNAVAILABLE and RESOURCE_EXHAUSTED the callback is re-signed and redelivered."""
    fake.script = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED]
    server = await start_sandbox()
    channel, stub = await _stub(server)
    reply = await stub.CreatePayment(_create_request(), timeout=WAIT_S)
    received = await fake.wait_for(3)
    payment = await _wait_finished(stub, reply.payment_id)
    await channel.close(grace=None)
    assert len({r.callback.provider_event_id for r in received}) == 1
    assert len({r.request_id for r in received}) == 1
    signed_at = [r.callback.signed_at.ToNanoseconds() for r in received]
    assert signed_at == sorted(signed_at)
    assert len(set(signed_at)) == 3
    assert all(r.verified for r in received)
    assert payment.delivery_status == sandbox_pb2.DELIVERY_STATUS_DELIVERED
    assert payment.delivery_attempts == 3


async def test_final_answer_stops_redelivery(
    start_sandbox: StartSandbox, fake: FakeCommandService
) -> None:
    """A final error (PERMISSION_DENIED) is not redelivered; the payment shows REJECTED."""
    fake.script = [grpc.StatusCode.PERMISSION_DENIED]
    server = await start_sandbox()
    channel, stub = await _stub(server)
    reply = await stub.CreatePayment(_create_request(), timeout=WAIT_S)
    payment = await _wait_finished(stub, reply.payment_id)
    await asyncio.sleep(0.3)
    await channel.close(grace=None)
    assert len(fake.received) == 1
    assert payment.delivery_status == sandbox_pb2.DELIVERY_STATUS_REJECTED
    assert payment.last_error == "PERMISSION_DENIED"


async def test_duplicates_carry_the_same_provider_event_id(
    start_sandbox: StartSandbox, fake: FakeCommandService
) -> None:
    """At 10000 bps every callback is delivered twice with one provider_event_id."""
    server = await start_sandbox(duplicate_bps=10_000)
    channel, stub = await _stub(server)
    reply = await stub.CreatePayment(_create_request(), timeout=WAIT_S)
    first, second = await fake.wait_for(2)
    payment = await _wait_finished(stub, reply.payment_id)
    await channel.close(grace=None)
    assert first.callback.provider_event_id == second.callback.provider_event_id
    assert first.request_id != second.request_id
    assert first.verified
    assert second.verified
    assert payment.duplicates_sent == 1
    assert payment.delivery_status == sandbox_pb2.DELIVERY_STATUS_DELIVERED


async def test_settle_payment_delivers_at_once(
    start_sandbox: StartSandbox, fake: FakeCommandService
) -> None:
    """SettlePayment sends the chosen outcome at once; settling differently later is refused."""
    server = await start_sandbox(delay_ms=SLOW_DELAY_MS)
    channel, stub = await _stub(server)
    created = await stub.CreatePayment(_create_request(), timeout=WAIT_S)
    settle = sandbox_pb2.SettlePaymentRequest(
        payment_id=created.payment_id, outcome=sandbox_pb2.OUTCOME_FAILED, wait_for_delivery=True
    )
    reply = await stub.SettlePayment(settle, timeout=WAIT_S)
    [received] = fake.received
    assert received.method == "FailPayment"
    assert received.verified
    assert reply.payment.delivery_status == sandbox_pb2.DELIVERY_STATUS_DELIVERED
    assert reply.payment.provider_event_id == received.callback.provider_event_id
    again = await stub.SettlePayment(settle, timeout=WAIT_S)
    assert again.payment.provider_event_id == received.callback.provider_event_id
    settle.outcome = sandbox_pb2.OUTCOME_CONFIRMED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SettlePayment(settle, timeout=WAIT_S)
    await channel.close(grace=None)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert len(fake.received) == 1


async def test_unknown_payment_is_not_found(start_sandbox: StartSandbox) -> None:
    """GetPayment and SettlePayment of an unknown id answer NOT_FOUND."""
    server = await start_sandbox()
    channel, stub = await _stub(server)
    payment_id = f"pay_{secrets.token_hex(6)}"
    with pytest.raises(grpc.aio.AioRpcError) as got:
        await stub.GetPayment(sandbox_pb2.GetPaymentRequest(payment_id=payment_id), timeout=WAIT_S)
    with pytest.raises(grpc.aio.AioRpcError) as settled:
        await stub.SettlePayment(
            sandbox_pb2.SettlePaymentRequest(
                payment_id=payment_id, outcome=sandbox_pb2.OUTCOME_CONFIRMED
            ),
            timeout=WAIT_S,
        )
    await channel.close(grace=None)
    assert got.value.code() == grpc.StatusCode.NOT_FOUND
    assert settled.value.code() == grpc.StatusCode.NOT_FOUND


async def test_drain_delivers_queued_callbacks(
    start_sandbox: StartSandbox, fake: FakeCommandService
) -> None:
    """Stopping right after a settlement still delivers its callback before the process ends."""
    server = await start_sandbox(delay_ms=SLOW_DELAY_MS)
    channel, stub = await _stub(server)
    created = await stub.CreatePayment(_create_request(), timeout=WAIT_S)
    await stub.SettlePayment(
        sandbox_pb2.SettlePaymentRequest(
            payment_id=created.payment_id, outcome=sandbox_pb2.OUTCOME_CONFIRMED
        ),
        timeout=WAIT_S,
    )
    await channel.close(grace=None)
    await server.stop(5)
    assert [r.method for r in fake.received] == ["ConfirmPayment"]


async def test_health_reports_serving(start_sandbox: StartSandbox) -> None:
    """The sandbox answers the standard health check with SERVING."""
    server = await start_sandbox()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=WAIT_S
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _payment_request(provider_id: str, amount_minor: int = 990) -> PaymentRequest:
    return PaymentRequest(
        trade_id=f"T-{secrets.token_hex(6)}",
        provider_id=provider_id,
        amount_minor=amount_minor,
        currency="CNY",
        payment_deadline_unix_s=int(time.time()) + 900,
        buyer_account_id=f"buyer-{secrets.token_hex(4)}",
    )


async def test_adapter_create_is_idempotent_on_trade_id(
    start_sandbox: StartSandbox, identity: Identity
) -> None:
    """The command server's adapter gets the same payment back when it retries a trade."""
    server = await start_sandbox(delay_ms=SLOW_DELAY_MS)
    provider = SandboxProvider(
        provider_id=identity.provider_id, target=f"127.0.0.1:{server.port}", timeout_s=5
    )
    request = _payment_request(identity.provider_id)
    first = await provider.create_payment(request, timeout_s=5)
    again = await provider.create_payment(request, timeout_s=5)
    other = await provider.create_payment(_payment_request(identity.provider_id), timeout_s=5)
    await provider.close()
    assert first == again
    assert other.payment_id != first.payment_id
    assert first.checkout_url.endswith(first.payment_id)


async def test_adapter_refusal_for_a_trade_reused_with_other_details(
    start_sandbox: StartSandbox, identity: Identity
) -> None:
    """The same trade id with another amount is refused for good (ALREADY_EXISTS)."""
    server = await start_sandbox(delay_ms=SLOW_DELAY_MS)
    provider = SandboxProvider(
        provider_id=identity.provider_id, target=f"127.0.0.1:{server.port}", timeout_s=5
    )
    request = _payment_request(identity.provider_id)
    await provider.create_payment(request, timeout_s=5)
    changed = PaymentRequest(
        trade_id=request.trade_id,
        provider_id=request.provider_id,
        amount_minor=request.amount_minor + 1,
        currency=request.currency,
        payment_deadline_unix_s=request.payment_deadline_unix_s,
        buyer_account_id=request.buyer_account_id,
    )
    with pytest.raises(PaymentRequestRefused) as caught:
        await provider.create_payment(changed, timeout_s=5)
    await provider.close()
    assert caught.value.reason == "ALREADY_EXISTS"


async def test_adapter_unreachable_gateway_is_retryable(unused_tcp_port: int) -> None:
    """A gateway nobody listens for is ProviderUnavailable, never a refusal."""
    provider = SandboxProvider(
        provider_id="sandbox", target=f"127.0.0.1:{unused_tcp_port}", timeout_s=1
    )
    with pytest.raises(ProviderUnavailable):
        await provider.create_payment(_payment_request("sandbox"), timeout_s=1)
    await provider.close()


async def _wait_finished(
    stub: sandbox_pb2_grpc.SandboxGatewayServiceAsyncStub, payment_id: str
) -> sandbox_pb2.Payment:
    """Return the payment once its delivery has ended (delivered, rejected or abandoned)."""
    deadline = time.monotonic() + WAIT_S
    ongoing = {sandbox_pb2.DELIVERY_STATUS_PENDING, sandbox_pb2.DELIVERY_STATUS_DELIVERING}
    while True:
        reply = await stub.GetPayment(
            sandbox_pb2.GetPaymentRequest(payment_id=payment_id), timeout=WAIT_S
        )
        if reply.payment.delivery_status not in ongoing:
            return reply.payment
        assert time.monotonic() < deadline, "the delivery did not end"
        await asyncio.sleep(0.02)
