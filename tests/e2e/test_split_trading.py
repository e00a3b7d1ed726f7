"""Trading across command servers that split or balance the slice ranges, owners killed.

Split: three processes take `0-31`, `32-63` and a standby for `32-63`, the half that holds
the market (PTS-CNY lies in range 41). Balanced: two members share the ranges, a third
joins, then the member that owns the market's range is killed. Sellers and buyers live in
both halves; clients place SELL orders and IOC BUY orders that match them, and the sandbox
provider pays most trades (and fails some) a moment after each is matched. After the kill
the market's next owner finds the open trades of its market and the placements of its
accounts and drives them on, while the steps on other servers' accounts keep crossing
servers. Every attempt is then retried with its request id until answered. What must hold:
every acknowledged order is in the book once, every order in the log was acknowledged,
every trade ends (settled, or cancelled at its deadline or on a failed payment), and the
query server's CheckInvariants finds I1 (conservation) and I2 (escrow) intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from pointex.client.positions import position_message
from pointex.server import limits
from pointex.server.domain import streams
from pointex.server.domain.market_events import (
    OrderPlaced,
    TradeCancelled,
    TradeCreated,
    TradeSettled,
)
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import EventStore, RecordedEvent
from pointex.server.eventstore.postgres.store import PostgresEventStore
from pointex.server.slices import range_of
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import (
    command_service_pb2_grpc,
    common_pb2,
    query_service_pb2,
    query_service_pb2_grpc,
)
from tests.e2e.conftest import (
    ACME_TOKEN,
    OPERATOR_TOKEN,
    ServerProcess,
    StartCommandServer,
    StartQueryServer,
    bearer,
    sandbox_provider,
    wait_balanced,
    wait_serving,
)
from tests.e2e.test_crash import opened_store

pytestmark = pytest.mark.parametrize(
    "_backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

LEASE_MS = 2_000
SECRET = "whsec_" + uuid.uuid4().hex
PAYMENT_WINDOW_MS = 4_000  # A trade whose payment never comes is cancelled soon.
TRADERS_PER_HALF = 4
SELLER_POINTS = 60
CLIENTS = 6
LOAD_BEFORE_S = 1.5
LOAD_AFTER_S = 2 * LEASE_MS / 1000 + 2.0
CALL_TIMEOUT_S = 3.0
ENDED_WITHIN_S = 40.0
# Refusals that answer an order for good (a seller without enough points left, say).
_FINAL = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT})


@dataclass
class Order:
    """One order as a client sent it, and how it was answered last."""

    request: pb.PlaceOrderRequest
    reply: pb.PlaceOrderResponse | None = None
    refused: grpc.StatusCode | None = None

    @property
    def answered(self) -> bool:
        """Tell whether the order got an answer for good (placed, or refused)."""
        return self.reply is not None or self.refused is not None


def _in_low_half(account_id: str) -> bool:
    return range_of(f"account-{account_id}") < 32


def _traders(prefix: str) -> list[str]:
    """Return TRADERS_PER_HALF account ids in each half of the ranges."""
    low: list[str] = []
    high: list[str] = []
    while len(low) < TRADERS_PER_HALF or len(high) < TRADERS_PER_HALF:
        account_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
        half = low if _in_low_half(account_id) else high
        if len(half) < TRADERS_PER_HALF:
            half.append(account_id)
    return low + high


async def _call(target: str, rpc: str, request: object, token: str = ACME_TOKEN) -> object:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = command_service_pb2_grpc.CommandServiceStub(channel)
        return await getattr(stub, rpc)(request, metadata=bearer(token), timeout=CALL_TIMEOUT_S)


async def _open_traders(target: str) -> tuple[list[str], list[str]]:
    """Open a merchant, funded sellers and empty buyers in both halves; return both lists."""
    merchant = f"shop-{uuid.uuid4().hex[:8]}"
    sellers, buyers = _traders("s"), _traders("b")
    await _call(
        target,
        "OpenAccount",
        pb.OpenAccountRequest(
            request_id=uuid.uuid4().hex,
            account_id=merchant,
            kind=common_pb2.ACCOUNT_KIND_MERCHANT,
        ),
    )
    mint = pb.MintPointsRequest(
        request_id=uuid.uuid4().hex,
        merchant_account_id=merchant,
        amount_points=SELLER_POINTS * len(sellers),
    )
    await _call(target, "MintPoints", mint, OPERATOR_TOKEN)
    for account_id in (*sellers, *buyers):
        opening = pb.OpenAccountRequest(
            request_id=uuid.uuid4().hex,
            account_id=account_id,
            kind=common_pb2.ACCOUNT_KIND_MEMBER,
        )
        await _call(target, "OpenAccount", opening)
    for seller in sellers:
        issue = pb.IssuePointsRequest(
            request_id=uuid.uuid4().hex,
            merchant_account_id=merchant,
            member_account_id=seller,
            amount_points=SELLER_POINTS,
        )
        await _call(target, "IssuePoints", issue)
    return sellers, buyers


async def _send(target: str, order: Order) -> None:
    """Send an order once; record its reply, or a refusal for good (others are retried)."""
    try:
        reply = await _call(target, "PlaceOrder", order.request)
    except grpc.aio.AioRpcError as error:
        if error.code() in _FINAL:
            order.refused = error.code()
        return
    assert isinstance(reply, pb.PlaceOrderResponse)
    order.reply = reply


async def _client(
    targets: list[str],
    sellers: list[str],
    buyers: list[str],
    draw: random.Random,
    stop: asyncio.Event,
) -> list[Order]:
    """Place orders until `stop`, each retried (same request id) until it is answered."""
    orders: list[Order] = []
    while not stop.is_set():
        selling = draw.random() < 0.5
        order = Order(
            pb.PlaceOrderRequest(
                request_id=uuid.uuid4().hex,
                account_id=draw.choice(sellers if selling else buyers),
                market_id="PTS-CNY",
                side=common_pb2.ORDER_SIDE_SELL if selling else common_pb2.ORDER_SIDE_BUY,
                quantity_points=draw.randint(1, 3),
                limit_price_minor=100,
                time_in_force=(
                    common_pb2.TIME_IN_FORCE_GTC if selling else common_pb2.TIME_IN_FORCE_IOC
                ),
            )
        )
        orders.append(order)
        while not order.answered and not stop.is_set():
            await _send(draw.choice(targets), order)
            if not order.answered:
                await asyncio.sleep(0.1)
    return orders


async def _log(store: EventStore) -> list[RecordedEvent]:
    events: list[RecordedEvent] = []
    while page := await store.read_all(len(events), limits.read_batch_events_max):
        events.extend(page)
    return events


async def _until_every_trade_ended(store_url: str) -> tuple[list[object], int]:
    """Read the log until every trade in it is settled or cancelled; return it and its head.

    Fails naming the trades still open and the last events of their streams.
    """
    open_trades: dict[str, list[str]] = {}
    try:
        async with asyncio.timeout(ENDED_WITHIN_S), opened_store(store_url) as store:
            while True:
                recorded = await _log(store)
                decoded = [codec.decode(event) for event in recorded]
                created = {e.trade_id for e in decoded if isinstance(e, TradeCreated)}
                ended = {
                    e.trade_id for e in decoded if isinstance(e, TradeSettled | TradeCancelled)
                }
                if created <= ended:
                    return decoded, recorded[-1].position
                open_trades = {
                    trade_id: [
                        f"{event.position} {event.type}"
                        for event in recorded
                        if event.stream_id == streams.trade(trade_id)
                    ][-4:]
                    for trade_id in sorted(created - ended)[:5]
                }
                await asyncio.sleep(0.25)
    except TimeoutError:
        pytest.fail(f"trades still open after {ENDED_WITHIN_S} s (up to 5): {open_trades}")


async def _start(
    start_command_server: StartCommandServer, store_url: str, part: str, env: dict[str, str]
) -> ServerProcess:
    server = await start_command_server(
        store_url,
        extra_env={"POINTEX_SLICE_LEASE_MS": str(LEASE_MS), "POINTEX_SLICE_RANGES": part, **env},
    )
    await wait_serving(server.target)
    return server


@contextlib.asynccontextmanager
async def _paying_sandbox(tmp_path: Path, callback_target: str) -> AsyncIterator[Path]:
    """Run the sandbox: it pays three trades in four 200 ms after each match, fails the rest.

    Yields the providers file. Should `callback_target` die, the callbacks still queued for
    it are dropped at the end (a short grace).
    """
    async with sandbox_provider(
        tmp_path,
        callback_target,
        SECRET,
        POINTEX_PAYMENT_DELAY_MS="200",
        POINTEX_PAYMENT_FAILURE_RATE_BPS="2500",
        POINTEX_SHUTDOWN_GRACE_S="1",
    ) as (_, providers):
        yield providers


def _markets_env(tmp_path: Path, providers: Path) -> dict[str, str]:
    """Write the markets file (a short payment window); return the servers' market settings."""
    markets = tmp_path / "markets.toml"
    markets.write_text(
        f'[markets.PTS-CNY]\nprovider_id = "sandbox"\npayment_window_ms = {PAYMENT_WINDOW_MS}\n'
    )
    return {"POINTEX_PAYMENT_PROVIDERS_FILE": str(providers), "POINTEX_MARKETS_FILE": str(markets)}


async def _trade_through(
    store_url: str,
    start_query_server: StartQueryServer,
    servers: list[ServerProcess],
    fault: Callable[[], Awaitable[list[ServerProcess]]],
) -> list[Order]:
    """Trade through `servers` under load, inflict `fault` (it returns the survivors), check.

    Every order is then retried through the survivors until answered; every trade must end,
    every acknowledged order be placed once and every order placed acknowledged, and
    CheckInvariants at the log's head find nothing. Returns the orders.
    """
    sellers, buyers = await _open_traders(servers[0].target)
    targets = [server.target for server in servers]
    stop = asyncio.Event()
    draw = random.Random()
    clients = [
        asyncio.create_task(_client(targets, sellers, buyers, random.Random(draw.random()), stop))
        for _ in range(CLIENTS)
    ]
    await asyncio.sleep(LOAD_BEFORE_S)
    survivors = [server.target for server in await fault()]
    await asyncio.sleep(LOAD_AFTER_S)
    stop.set()
    orders = [order for orders in await asyncio.gather(*clients) for order in orders]
    async with asyncio.timeout(ENDED_WITHIN_S):
        for order in orders:  # The rest, until each is answered, with its request id.
            while not order.answered:
                await _send(draw.choice(survivors), order)
                if not order.answered:
                    await asyncio.sleep(0.1)
    decoded, head = await _until_every_trade_ended(store_url)
    query = await start_query_server(survivors[-1])
    async with grpc.aio.insecure_channel(query.target) as channel:
        queries = query_service_pb2_grpc.QueryServiceStub(channel)
        checked = await queries.CheckInvariants(
            query_service_pb2.CheckInvariantsRequest(min_position=position_message(head)),
            metadata=bearer(OPERATOR_TOKEN),
            timeout=30,
        )
    assert not checked.violations, checked
    placed = [e.order_id for e in decoded if isinstance(e, OrderPlaced)]
    acknowledged = [o.reply.order.order_id for o in orders if o.reply is not None]
    assert len(placed) == len(set(placed)), "an order was placed twice"
    assert set(placed) == set(acknowledged)
    trades = [e for e in decoded if isinstance(e, TradeCreated)]
    assert trades, "no order matched"
    crossed = [t for t in trades if _in_low_half(t.seller_account_id)]
    assert crossed, "no trade had its seller in the low half"
    assert any(isinstance(e, TradeSettled) for e in decoded)
    return orders


async def test_trading_across_the_halves_survives_the_markets_owner_killed(
    tmp_path: Path,
    store_url: str,
    unused_tcp_port: int,
    start_command_server: StartCommandServer,
    start_query_server: StartQueryServer,
) -> None:
    """Orders from both halves under load; SIGKILL the market's owner; all once, I1/I2 hold."""
    assert range_of("market-PTS-CNY") >= 32, "the market lies in the high half"
    low_target = f"127.0.0.1:{unused_tcp_port}"  # The sandbox calls back the low half's owner.
    async with _paying_sandbox(tmp_path, low_target) as providers:
        env = _markets_env(tmp_path, providers)
        low = await _start(
            start_command_server, store_url, "0-31", {**env, "POINTEX_LISTEN": low_target}
        )
        high = await _start(start_command_server, store_url, "32-63", env)
        standby = await _start(start_command_server, store_url, "32-63", env)

        async def kill_the_markets_owner() -> list[ServerProcess]:
            high.process.kill()  # Its trades and the high half change hands.
            await high.process.wait()
            return [low, standby]

        await _trade_through(
            store_url, start_query_server, [low, high, standby], kill_the_markets_owner
        )


async def test_trading_goes_on_as_balanced_ranges_move_and_the_markets_owner_dies(
    tmp_path: Path,
    store_url: str,
    unused_tcp_port: int,
    start_command_server: StartCommandServer,
    start_query_server: StartQueryServer,
) -> None:
    """Two balancing members under trading load; a third joins; the market's owner is killed.

    Ranges move twice (the join, then the death), the market's among them at least once: its
    trades are driven on by its next owner, and every check of the split test holds.
    """
    second_target = f"127.0.0.1:{unused_tcp_port}"  # The sandbox calls back the second.
    async with _paying_sandbox(tmp_path, second_target) as providers:
        env = _markets_env(tmp_path, providers)
        first, second = await asyncio.gather(
            _start(start_command_server, store_url, "balanced", env),
            _start(
                start_command_server,
                store_url,
                "balanced",
                {**env, "POINTEX_LISTEN": second_target},
            ),
        )
        await wait_balanced(store_url, [first, second])

        async def join_then_kill_the_markets_owner() -> list[ServerProcess]:
            third = await _start(start_command_server, store_url, "balanced", env)
            members = [first, second, third]
            await wait_balanced(store_url, members)
            async with opened_store(store_url) as store:
                assert isinstance(store, PostgresEventStore)
                leases = await store.leases()
            market_range = range_of("market-PTS-CNY")
            [owner] = [lease.owner_address for lease in leases if lease.slice_range == market_range]
            [dying] = [member for member in members if member.target == owner]
            dying.process.kill()
            await dying.process.wait()
            survivors = [member for member in members if member is not dying]
            await wait_balanced(store_url, survivors)
            return survivors

        await _trade_through(
            store_url, start_query_server, [first, second], join_then_kill_the_markets_owner
        )
