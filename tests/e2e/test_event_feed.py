"""EventFeed over real gRPC from a real command server, on both event stores.

The test process appends through its own store instance on the server's database (as a
second writer would), and follows the log through the server's EventFeed.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pointex.client.positions import decode_global, encode_global
from pointex.server.eventstore.factory import open_store
from pointex.server.eventstore.port import EventStore, NewEvent, StreamAppend, stream_slice
from pointex.v1 import common_pb2, event_feed_pb2, event_feed_pb2_grpc, events_pb2
from tests.e2e.conftest import (
    ACME_TOKEN,
    OPERATOR_TOKEN,
    QUERY_TOKEN,
    StartCommandServer,
    bearer,
)

RECEIVE_TIMEOUT_S = 20


def minted(account_id: str, amount: int) -> NewEvent:
    """A PointsMinted event with its protobuf payload."""
    payload = events_pb2.PointsMinted(account_id=account_id, amount_points=amount)
    return NewEvent("PointsMinted", 1, payload.SerializeToString())


@pytest.fixture
async def writer(store_url: str) -> AsyncIterator[EventStore]:
    """A second writer on the server's database."""
    store = open_store(store_url)
    await store.open()
    yield store
    await store.close()


async def collect(
    target: str, count: int, from_token: bytes = b"", categories: tuple[str, ...] = ()
) -> list[events_pb2.Event]:
    """Subscribe and return the first `count` events delivered."""
    received: list[events_pb2.Event] = []
    async with grpc.aio.insecure_channel(target) as channel:
        call = event_feed_pb2_grpc.EventFeedStub(channel).Subscribe(
            event_feed_pb2.SubscribeRequest(
                from_position=common_pb2.Position(token=from_token), categories=categories
            ),
            timeout=RECEIVE_TIMEOUT_S,
            metadata=bearer(QUERY_TOKEN),
        )
        async for response in call:
            received.extend(response.events.events)
            if len(received) >= count:
                call.cancel()
                break
    return received


async def test_catch_up_then_live_in_position_order(
    store_url: str, writer: EventStore, start_command_server: StartCommandServer
) -> None:
    """History, then events appended while subscribed, arrive once each, in order, typed."""
    server = await start_command_server(store_url, markets=False)
    await writer.append([StreamAppend("account-m1", 0, (minted("m1", 5), minted("m1", 7)))])
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = event_feed_pb2_grpc.EventFeedStub(channel).Subscribe(
            event_feed_pb2.SubscribeRequest(),
            timeout=RECEIVE_TIMEOUT_S,
            metadata=bearer(OPERATOR_TOKEN),
        )
        received: list[events_pb2.Event] = []
        async for response in call:
            received.extend(response.events.events)
            if len(received) == 2:
                await writer.append([StreamAppend("account-m2", 0, (minted("m2", 9),))])
            if len(received) >= 3:
                call.cancel()
                break
    assert [decode_global(e.position.token) for e in received] == [1, 2, 3]
    assert [e.points_minted.amount_points for e in received] == [5, 7, 9]
    first = received[0]
    assert (first.stream_id, first.stream_version, first.type) == ("account-m1", 1, "PointsMinted")
    assert first.slice == stream_slice("account-m1")
    assert first.recorded_at.seconds > 0


async def test_resume_from_a_position_skips_nothing(
    store_url: str, writer: EventStore, start_command_server: StartCommandServer
) -> None:
    """Subscribing from position 2 delivers exactly the events after it."""
    server = await start_command_server(store_url, markets=False)
    for amount in range(1, 5):
        await writer.append([StreamAppend(f"account-a{amount}", 0, (minted("a", amount),))])
    received = await collect(server.target, 2, from_token=encode_global(2))
    assert [decode_global(e.position.token) for e in received] == [3, 4]


async def test_category_filter(
    store_url: str, writer: EventStore, start_command_server: StartCommandServer
) -> None:
    """Only events of the asked categories are delivered."""
    server = await start_command_server(store_url, markets=False)
    await writer.append([StreamAppend("transfer-t1", 0, (minted("x", 1),))])
    await writer.append([StreamAppend("account-a1", 0, (minted("a1", 2),))])
    received = await collect(server.target, 1, categories=("account",))
    assert [e.stream_id for e in received] == ["account-a1"]


async def test_malformed_position_is_invalid_argument(
    store_url: str, start_command_server: StartCommandServer
) -> None:
    """A token of an unknown format is INVALID_ARGUMENT with reason POSITION_INVALID."""
    server = await start_command_server(store_url, markets=False)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(server.target, 1, from_token=b"\x07junk")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("POSITION_INVALID", "pointex.v1")


@pytest.mark.parametrize(
    ("token", "code", "reason"),
    [
        (None, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING"),
        ("not-a-known-token-at-all", grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"),
        (ACME_TOKEN, grpc.StatusCode.PERMISSION_DENIED, "ROLE_FORBIDDEN"),
    ],
)
async def test_feed_requires_operator_or_query_server(
    store_url: str,
    start_command_server: StartCommandServer,
    token: str | None,
    code: grpc.StatusCode,
    reason: str,
) -> None:
    """No token, an unknown token, or a partner's token cannot follow the feed."""
    server = await start_command_server(store_url, markets=False)
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = event_feed_pb2_grpc.EventFeedStub(channel).Subscribe(
            event_feed_pb2.SubscribeRequest(),
            timeout=RECEIVE_TIMEOUT_S,
            metadata=bearer(token) if token else None,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
    assert caught.value.code() == code
    assert error_reason(caught.value) == reason


async def drain(call: object) -> None:
    """Read a stream until it ends (with an error, for the caller to catch)."""
    while True:
        await call.read()  # type: ignore[attr-defined]


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """Return the ErrorInfo reason carried by a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "pointex.v1"
    return str(info.reason)


async def test_sigterm_ends_subscriptions_with_shutting_down(
    store_url: str, writer: EventStore, start_command_server: StartCommandServer
) -> None:
    """SIGTERM ends a live subscription at once with UNAVAILABLE / SHUTTING_DOWN; exit 0."""
    server = await start_command_server(store_url, markets=False)
    await writer.append([StreamAppend("account-m1", 0, (minted("m1", 5),))])
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = event_feed_pb2_grpc.EventFeedStub(channel).Subscribe(
            event_feed_pb2.SubscribeRequest(),
            timeout=RECEIVE_TIMEOUT_S,
            metadata=bearer(QUERY_TOKEN),
        )
        first = await call.read()
        assert isinstance(first, event_feed_pb2.SubscribeResponse)
        assert len(first.events.events) == 1
        server.process.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await drain(call)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(caught.value) == "SHUTTING_DOWN"
    # The grace period is 10 s by default; ending the stream lets the process exit well before.
    assert await asyncio.wait_for(server.process.wait(), 8) == 0
