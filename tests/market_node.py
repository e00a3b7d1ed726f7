"""One incarnation of the command side, wired as the server wires it, without gRPC.

A `Node` runs the command core (`start_core`), the transfer handlers, the market with its
trade processes and payment callbacks, and the pending-issue timer over a store, with a
clock the test controls and a payment provider that records what it was asked (the real
sandbox provider is in the e2e tests). Its recovery scan is the server's: every process
kind, before any command. Signed callbacks are made with the SDK's signing functions and
the provider's secret.

Used by the market's integration tests (tests/integration/test_market.py) and by the
deterministic simulation (tests/simulation), which crashes nodes and starts new ones over
the same store.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from pointex.client.callbacks import sign
from pointex.server.actors.market_actor import MarketActors
from pointex.server.actors.program_actor import ProgramActor
from pointex.server.actors.runtime import AccountActors
from pointex.server.actors.stream_actor import Decide, Inspect
from pointex.server.command.app.activations import PendingActivations
from pointex.server.command.app.expiry import LotExpiry
from pointex.server.command.app.handlers import CommandHandlers
from pointex.server.command.app.idempotency import request_key
from pointex.server.command.app.market_handlers import MarketHandlers, order_id_for
from pointex.server.command.app.market_recovery import OpenPlacements, OpenTrades
from pointex.server.command.app.payment_callbacks import PaymentCallbacks
from pointex.server.command.app.record_lookup import RecordLookup
from pointex.server.command.app.recovery import PROCESS_KINDS, recover
from pointex.server.command.app.runner import ProcessRunner
from pointex.server.command.app.trade_processes import TradeProcesses
from pointex.server.command.bootstrap import finish_processes, lot_expiry, start_core
from pointex.server.command.edge.callbacks import CallbackEdge
from pointex.server.command.edge.market_replies import MARKET_REPLIES, ProtoMarketHandlers
from pointex.server.command.edge.replies import request_of
from pointex.server.domain.commands import MintPoints, OpenAccount
from pointex.server.domain.market_commands import PlaceOrder
from pointex.server.domain.order_book import OrderBook
from pointex.server.domain.values import (
    OPERATOR,
    AccountKind,
    FeeSchedule,
    Market,
    OrderSide,
    Principal,
    Role,
    Span,
    TimeInForce,
)
from pointex.server.eventstore.group_commit import GroupCommitter
from pointex.server.eventstore.port import EventStore
from pointex.server.payments.port import (
    PaymentCreated,
    PaymentRequest,
    PaymentRequestRefused,
    ProviderUnavailable,
    RefundDone,
    RefundRefused,
    RefundRequest,
)
from pointex.server.payments.verification import CallbackVerifier, ProviderSecret, ProviderSecrets
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2

ACME = Principal("acme", Role.PARTNER)
PROVIDER = Principal("sandbox", Role.PAYMENT_PROVIDER)
SECRET = b"test-secret-for-callbacks"
WINDOW_MS = 60_000
PTS_CNY = Market(
    "PTS-CNY", "CNY", FeeSchedule(100, 1), FeeSchedule(50, 0), Span(WINDOW_MS), 10_000,
    10**9, "sandbox", True,
)  # fmt: skip
START_MS = 1_800_000_000_000


@dataclass
class Provider:
    """A payment provider that creates payments at once (or refuses, when told to)."""

    provider_id: str = "sandbox"
    refuse: bool = False
    asked: Counter[str] = field(default_factory=Counter)
    timeouts_s: list[float] = field(default_factory=list)
    refunds: list[RefundRequest] = field(default_factory=list)
    refund_refusal: str = ""  # A reason: every refund is refused with it.
    refunds_unavailable: int = 0  # Refund asks answered ProviderUnavailable before one is made.

    async def create_payment(self, request: PaymentRequest, *, timeout_s: float) -> PaymentCreated:
        """Create the payment of a trade: its id is derived from the trade id (idempotent)."""
        assert timeout_s > 0
        self.timeouts_s.append(timeout_s)
        self.asked[request.trade_id] += 1
        if self.refuse:
            raise PaymentRequestRefused("DECLINED", "the test provider declines")
        return PaymentCreated(
            payment_id_of(request.trade_id), f"https://pay.test/{request.trade_id}"
        )

    async def refund_payment(self, request: RefundRequest, *, timeout_s: float) -> RefundDone:
        """Record the refund asked for; its provider id is derived from the refund id.

        Refused when `refund_refusal` says so; unavailable `refunds_unavailable` times first.
        """
        assert timeout_s > 0
        self.refunds.append(request)
        if self.refund_refusal:
            raise RefundRefused(self.refund_refusal, "refused by the test")
        if self.refunds_unavailable:
            self.refunds_unavailable -= 1
            raise ProviderUnavailable("unavailable in the test")
        return RefundDone(request.refund_id, f"rfd-{request.refund_id}")

    async def close(self) -> None:
        """Nothing to release."""


def payment_id_of(trade_id: str) -> str:
    """Return the id the test provider gives the payment of a trade."""
    return f"pay-{trade_id}"


@dataclass
class Clock:
    """The server's time, moved by the test."""

    now_ms: int = START_MS

    def __call__(self) -> int:
        """Return the time in Unix milliseconds."""
        return self.now_ms


@dataclass
class Node:
    """One incarnation of the command side over a shared store."""

    store: EventStore
    provider: Provider
    clock: Clock
    committer: GroupCommitter = field(init=False)
    accounts: AccountActors = field(init=False)
    handlers: CommandHandlers = field(init=False)
    activations: PendingActivations = field(init=False)
    expiry: LotExpiry = field(init=False)
    processes: TradeProcesses = field(init=False)
    market: ProtoMarketHandlers = field(init=False)
    callbacks: CallbackEdge = field(init=False)
    lookup: RecordLookup = field(init=False)
    markets: MarketActors = field(init=False)
    runner: ProcessRunner = field(init=False)
    program: ProgramActor = field(init=False)

    async def start(self) -> Node:
        """Wire everything, record the market, and recover what is open (every kind)."""
        core = start_core(self.store, resident_max=100, clock=self.clock)
        self.committer, self.accounts, self.lookup = core.committer, core.actors, core.lookup
        self.runner, self.program = core.runner, core.program
        await self.program.load()
        self.handlers = CommandHandlers(
            self.store, self.accounts, self.lookup, self.runner, self.program
        )
        self.activations = PendingActivations(self.accounts, self.runner, self.clock)
        self.accounts.watch_pending(self.activations.watch)
        self.expiry = lot_expiry(core, self.clock)
        self.markets = markets = MarketActors(self.store, self.committer, [PTS_CNY])
        self.processes = TradeProcesses(
            store=self.store,
            committer=self.committer,
            accounts=self.accounts,
            markets=markets,
            providers={"sandbox": self.provider},
            clock=self.clock,
            runner=self.runner,
        )
        self.market = MarketHandlers(
            store=self.store,
            accounts=self.accounts,
            markets=markets,
            processes=self.processes,
            lookup=self.lookup,
            runner=self.runner,
            replies=MARKET_REPLIES,
        )
        secrets = ProviderSecrets("sandbox", (ProviderSecret("k1", SECRET),))
        verifier = CallbackVerifier({"sandbox": secrets}, window_s=300)
        applier = PaymentCallbacks(store=self.store, lookup=self.lookup, processes=self.processes)
        self.callbacks = CallbackEdge(applier, verifier)
        await self.market.configure()
        kinds = (
            self.handlers.open_steps(),
            OpenPlacements(self.market),
            OpenTrades(self.processes),
            self.activations.tracker(),
            self.expiry.tracker(),
        )
        assert tuple(steps.kind for steps in kinds) == PROCESS_KINDS, kinds
        await recover(self.store, kinds)
        return self

    async def stop(self) -> None:
        """Stop processes and the writer (a clean stop)."""
        await finish_processes(self.processes, (self.activations, self.expiry), self.runner)
        await self.lookup.stop()
        await self.committer.stop()

    def abort(self) -> None:
        """Stop at once, finishing nothing, as a crash does (what committed stays)."""
        self.runner.abort()
        self.processes.stop_deadlines()
        self.activations.stop()
        self.expiry.stop()
        self.committer.abort()

    async def open(self, account_id: str, kind: AccountKind, points: int = 0) -> None:
        """Open an acme account, minting `points` into a merchant."""
        opened = OpenAccount(ACME.caller, account_id, kind, "acme", "")
        await self.accounts.ask(account_id, Decide(opened))
        if points:
            await self.accounts.ask(
                account_id, Decide(MintPoints(OPERATOR, account_id, points, ""))
            )

    async def place(  # noqa: PLR0917 - an order's terms.
        self,
        account_id: str,
        side: OrderSide,
        quantity: int,
        price: int,
        tif: TimeInForce = TimeInForce.GTC,
        request_id: str | None = None,
    ) -> pb.PlaceOrderResponse:
        """Place an order as acme."""
        request_id = request_id or uuid.uuid4().hex
        request = pb.PlaceOrderRequest(
            request_id=request_id,
            account_id=account_id,
            market_id="PTS-CNY",
            side=common_pb2.ORDER_SIDE_BUY if side is OrderSide.BUY else common_pb2.ORDER_SIDE_SELL,
            quantity_points=quantity,
            limit_price_minor=price,
            time_in_force=(
                common_pb2.TIME_IN_FORCE_GTC
                if tif is TimeInForce.GTC
                else common_pb2.TIME_IN_FORCE_IOC
            ),
        )
        key = request_key(ACME, request_id)
        order = PlaceOrder(order_id_for(key), account_id, "PTS-CNY", side, quantity, price, tif, "")
        return await self.market.place_order(ACME, request_of(request), order)

    async def cancel(self, order_id: str, request_id: str | None = None) -> pb.CancelOrderResponse:
        """Cancel a resting order as acme."""
        request = pb.CancelOrderRequest(
            request_id=request_id or uuid.uuid4().hex, market_id="PTS-CNY", order_id=order_id
        )
        return await self.market.cancel_order(ACME, request_of(request), "PTS-CNY", order_id)

    async def callback(
        self,
        trade_id: str,
        *,
        confirmed: bool,
        event_id: str | None = None,
        amount: int | None = None,
    ) -> pb.ConfirmPaymentResponse | pb.FailPaymentResponse:
        """Deliver a callback for a trade's payment, signed now with the provider's secret."""
        loaded = await self.processes.load(trade_id)
        assert loaded is not None
        assert loaded.trade.payment is not None
        callback = pb.PaymentCallback(
            provider_id="sandbox",
            payment_id=loaded.trade.payment.payment_id,
            trade_id=trade_id,
            amount=common_pb2.Money(
                amount_minor=loaded.trade.created.amount_due_minor if amount is None else amount,
                currency="CNY",
            ),
            provider_event_id=event_id or f"evt-{uuid.uuid4().hex}",
        )
        return await self.deliver(callback, confirmed=confirmed)

    async def deliver(
        self, callback: pb.PaymentCallback, *, confirmed: bool, request_id: str | None = None
    ) -> pb.ConfirmPaymentResponse | pb.FailPaymentResponse:
        """Sign `callback` now (its outcome, time and key set here) and hand it to the edge."""
        callback.outcome = (
            common_pb2.PAYMENT_OUTCOME_CONFIRMED if confirmed else common_pb2.PAYMENT_OUTCOME_FAILED
        )
        callback.signed_at.CopyFrom(Timestamp(seconds=self.clock() // 1000))
        callback.key_id = "k1"
        callback.signature = sign(callback, SECRET)
        request_id = request_id or uuid.uuid4().hex
        if confirmed:
            request = pb.ConfirmPaymentRequest(request_id=request_id, callback=callback)
            return await self.callbacks.handle(PROVIDER, request, pb.ConfirmPaymentResponse)
        failed = pb.FailPaymentRequest(request_id=request_id, callback=callback)
        return await self.callbacks.handle(PROVIDER, failed, pb.FailPaymentResponse)

    async def settle_background(self) -> None:
        """Wait until payment requests and other detached steps have run (at most 2 s)."""
        await asyncio.sleep(0)
        for _ in range(400):
            if not self.runner.busy:
                return
            await asyncio.sleep(0.005)

    async def book(self) -> OrderBook:
        """Return the market's order book (live: read it before the next await)."""
        book: OrderBook = await self.markets.actor("PTS-CNY").tell(Inspect(lambda b: b))
        return book

    async def balances(self, account_id: str) -> tuple[int, int]:
        """Return (available, held) of an account."""
        state = await self.accounts.peek(account_id)
        assert state is not None
        return state.available_points, state.held_points
