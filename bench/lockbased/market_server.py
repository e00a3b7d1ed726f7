"""The lock-based contender's market RPCs: requests checked, payments requested, callbacks verified.

PlaceOrder and CancelOrder run as LockBasedMarket transactions. After a placement commits,
each new trade's payment is requested from the sandbox provider (CreatePayment over gRPC,
in the background, as Pointex does: the order's reply does not wait for the gateway). A
callback (ConfirmPayment, FailPayment) is checked before it touches the database: the
provider id, the HMAC-SHA256 signature with the shared secret
(`pointex.client.callbacks.signature_matches`, constant time) and the signing time's window.
Every method raises `Rejected` to refuse; the server turns it into a gRPC status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final

import asyncpg
import grpc
from google.protobuf import timestamp_pb2

from bench import limits
from bench.lockbased.market import (
    BUY,
    CONFIRMED,
    FAILED,
    SELL,
    Callback,
    LockBasedMarket,
    LockBasedPayments,
    OrderRequest,
)
from bench.lockbased.store import Rejected, Stats
from pointex.client.callbacks import signature_matches
from pointex.client.positions import encode_global
from pointex.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from pointex.v1 import command_service_pb2 as cs
from pointex.v1 import common_pb2

log = logging.getLogger(__name__)

_SIDES: Final = {common_pb2.ORDER_SIDE_BUY: BUY, common_pb2.ORDER_SIDE_SELL: SELL}
_SIDE_ENUMS: Final = {BUY: common_pb2.ORDER_SIDE_BUY, SELL: common_pb2.ORDER_SIDE_SELL}
_TIF: Final = {common_pb2.TIME_IN_FORCE_GTC: "GTC", common_pb2.TIME_IN_FORCE_IOC: "IOC"}
_TIF_ENUMS: Final = {name: value for value, name in _TIF.items()}
_TRADE_STATUS: Final = {
    "PENDING_PAYMENT": common_pb2.TRADE_STATUS_PENDING_PAYMENT,
    "SETTLED": common_pb2.TRADE_STATUS_SETTLED,
    "CANCELLED": common_pb2.TRADE_STATUS_CANCELLED,
}
_OUTCOMES: Final = {
    common_pb2.PAYMENT_OUTCOME_CONFIRMED: CONFIRMED,
    common_pb2.PAYMENT_OUTCOME_FAILED: FAILED,
}
# CreatePayment answers after which the same request can never succeed: the trade is
# cancelled. Anything else (UNAVAILABLE, DEADLINE_EXCEEDED...) is retried: the call is
# idempotent on the trade id.
_REFUSED: Final = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
_PAYMENT_WINDOW_S: Final = 15 * 60
_CREATE_PAYMENT_TIMEOUT_S: Final = 5
_RETRY_PAUSE_S: Final = 0.1


def _position(row_id: int) -> common_pb2.Position:
    return common_pb2.Position(token=encode_global(row_id))


def order_message(row: asyncpg.Record) -> common_pb2.Order:
    """Return the Order message of an `orders` row."""
    return common_pb2.Order(
        order_id=str(row["order_id"]),
        market_id=row["market_id"],
        account_id=row["account_id"],
        side=_SIDE_ENUMS[row["side"]],
        time_in_force=_TIF_ENUMS[row["time_in_force"]],
        status=common_pb2.OrderStatus.Value(f"ORDER_STATUS_{row['status']}"),
        quantity_points=row["quantity"],
        limit_price_minor=row["price_minor"],
        currency="CNY",
        open_quantity_points=row["open_quantity"],
        filled_quantity_points=row["filled_quantity"],
        cancelled_quantity_points=row["cancelled_quantity"],
        client_order_id=row["client_order_id"],
    )


def trade_message(row: asyncpg.Record) -> common_pb2.Trade:
    """Return the Trade message of a `trades` row."""
    notional = row["quantity"] * row["price_minor"]
    return common_pb2.Trade(
        trade_id=str(row["trade_id"]),
        market_id=row["market_id"],
        status=_TRADE_STATUS[row["status"]],
        buy_order_id=str(row["buy_order_id"]),
        sell_order_id=str(row["sell_order_id"]),
        buyer_account_id=row["buyer_account_id"],
        seller_account_id=row["seller_account_id"],
        maker_side=_SIDE_ENUMS[row["maker_side"]],
        quantity_points=row["quantity"],
        price_minor=row["price_minor"],
        currency=row["currency"],
        notional_minor=notional,
        amount_due_minor=row["amount_due_minor"],
        seller_proceeds_minor=notional,
        payment_id=row["payment_id"] or "",
    )


def _order_request(request: cs.PlaceOrderRequest) -> OrderRequest:
    """Check a PlaceOrder request as the contract does, before any transaction."""
    if not request.request_id:
        raise Rejected("INVALID_ARGUMENT", "REQUEST_ID_MISSING", "request_id is required")
    side, tif = _SIDES.get(request.side), _TIF.get(request.time_in_force)
    if side is None or tif is None or not request.account_id:
        raise Rejected("INVALID_ARGUMENT", "INVALID_FIELD", "account, side and TIF are required")
    if request.quantity_points <= 0:
        raise Rejected("INVALID_ARGUMENT", "AMOUNT_NOT_POSITIVE", "quantity must be positive")
    if request.limit_price_minor <= 0:
        raise Rejected("INVALID_ARGUMENT", "PRICE_NOT_POSITIVE", "price must be positive")
    if request.market_id != limits.market_id:
        raise Rejected("NOT_FOUND", "MARKET_NOT_FOUND", f"only {limits.market_id} is served")
    return OrderRequest(
        request.request_id, request.account_id, request.market_id, side, tif,
        request.quantity_points, request.limit_price_minor, request.client_order_id,
    )  # fmt: skip


def _row_id(text: str, reason: str) -> int:
    if not text.isdigit() or len(text) > limits.lockbased_row_id_digits_max:
        raise Rejected("NOT_FOUND", reason, f"no such id {text[:64]!r}")
    return int(text)


class PaymentRequester:
    """Ask the sandbox provider for each new trade's payment, in the background."""

    def __init__(self, target: str, payments: LockBasedPayments, stats: Stats) -> None:
        """Connect lazily to the sandbox provider at `target`."""
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = sandbox_pb2_grpc.SandboxGatewayServiceStub(self._channel)
        self._payments = payments
        self._stats = stats
        self._slots = asyncio.Semaphore(limits.lockbased_payment_requests_max)
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, trades: list[asyncpg.Record]) -> None:
        """Start requesting the payment of each trade; return at once."""
        for trade in trades:
            task = asyncio.create_task(self._request(trade))
            # Held here so that the task is not collected before it ends.
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _request(self, trade: asyncpg.Record) -> None:
        deadline = timestamp_pb2.Timestamp(seconds=int(time.time()) + _PAYMENT_WINDOW_S)
        message = sandbox_pb2.CreatePaymentRequest(
            trade_id=str(trade["trade_id"]),
            amount_minor=trade["amount_due_minor"],
            currency=trade["currency"],
            payment_deadline=deadline,
            buyer_account_id=trade["buyer_account_id"],
        )
        async with self._slots:
            for attempt in range(limits.lockbased_payment_attempts_max):
                try:
                    reply = await self._stub.CreatePayment(
                        message, timeout=_CREATE_PAYMENT_TIMEOUT_S
                    )
                except grpc.aio.AioRpcError as error:
                    if error.code() in _REFUSED:
                        break
                    await asyncio.sleep(_RETRY_PAUSE_S * (attempt + 1))
                    continue
                self._stats.payments_requested += 1
                with contextlib.suppress(Rejected):
                    # The callback may have come first and recorded it already.
                    await self._payments.record_payment(trade["trade_id"], reply.payment_id)
                return
        self._stats.payment_requests_failed += 1
        try:
            await self._payments.cancel_unpaid(trade["trade_id"])
        except Rejected as error:
            log.warning("could not cancel unpaid trade %s: %s", trade["trade_id"], error)

    async def close(self) -> None:
        """Stop the requests still running and close the channel."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._channel.close(grace=None)


class MarketServicer:
    """PlaceOrder, CancelOrder, ConfirmPayment and FailPayment over the lock-based market."""

    def __init__(
        self,
        market: LockBasedMarket,
        payments: LockBasedPayments,
        requester: PaymentRequester,
        provider: tuple[str, bytes],
    ) -> None:
        """Serve the market; `provider` is the sandbox's provider id and callback secret."""
        self._market = market
        self._payments = payments
        self._requester = requester
        self._provider_id, self._secret = provider

    async def place_order(self, request: cs.PlaceOrderRequest) -> cs.PlaceOrderResponse:
        """Place and match an order, then request the payments of its trades."""
        placed = await self._market.place(_order_request(request))
        self._requester.request([t for t in placed.trades if t["payment_id"] is None])
        return cs.PlaceOrderResponse(
            position=_position(placed.order["order_id"]),
            order=order_message(placed.order),
            trades=[trade_message(trade) for trade in placed.trades],
            trade_count=len(placed.trades),
        )

    async def cancel_order(self, request: cs.CancelOrderRequest) -> cs.CancelOrderResponse:
        """Take a resting order off the book."""
        if not request.request_id:
            raise Rejected("INVALID_ARGUMENT", "REQUEST_ID_MISSING", "request_id is required")
        if request.market_id != limits.market_id:
            raise Rejected("NOT_FOUND", "MARKET_NOT_FOUND", f"only {limits.market_id} is served")
        order_id = _row_id(request.order_id, "ORDER_NOT_FOUND")
        done = await self._market.cancel(request.request_id, request.market_id, order_id)
        return cs.CancelOrderResponse(
            position=_position(done.order["order_id"]),
            order=order_message(done.order),
            cancelled_quantity_points=done.cancelled_points,
            released_points=done.released_points,
        )

    async def confirm_payment(self, request: cs.ConfirmPaymentRequest) -> cs.ConfirmPaymentResponse:
        """Settle the trade of a verified confirmation."""
        applied = await self._payments.apply(self._verified(request, CONFIRMED))
        return cs.ConfirmPaymentResponse(
            position=_position(applied.trade_id),
            trade_id=str(applied.trade_id),
            trade_status=_TRADE_STATUS[applied.trade_status],
            refund_required=applied.refund_required,
            duplicate=applied.duplicate,
        )

    async def fail_payment(self, request: cs.FailPaymentRequest) -> cs.FailPaymentResponse:
        """Cancel the trade of a verified failure."""
        applied = await self._payments.apply(self._verified(request, FAILED))
        return cs.FailPaymentResponse(
            position=_position(applied.trade_id),
            trade_id=str(applied.trade_id),
            trade_status=_TRADE_STATUS[applied.trade_status],
            refund_required=applied.refund_required,
            duplicate=applied.duplicate,
        )

    def _verified(
        self, request: cs.ConfirmPaymentRequest | cs.FailPaymentRequest, outcome: str
    ) -> Callback:
        """Check a callback before any transaction; refusals are counted and change nothing."""
        try:
            return self._check(request, outcome)
        except Rejected:
            self._market.stats.callbacks_refused += 1
            raise

    def _check(
        self, request: cs.ConfirmPaymentRequest | cs.FailPaymentRequest, outcome: str
    ) -> Callback:
        callback = request.callback
        if not request.request_id:
            raise Rejected("INVALID_ARGUMENT", "REQUEST_ID_MISSING", "request_id is required")
        if _OUTCOMES.get(callback.outcome) != outcome:
            raise Rejected("INVALID_ARGUMENT", "INVALID_FIELD", f"outcome must be {outcome}")
        if not callback.provider_event_id:
            raise Rejected("INVALID_ARGUMENT", "INVALID_FIELD", "provider_event_id is required")
        if callback.provider_id != self._provider_id:
            raise Rejected("PERMISSION_DENIED", "PROVIDER_MISMATCH", "unknown provider")
        if not callback.signature:
            raise Rejected("PERMISSION_DENIED", "SIGNATURE_MISSING", "no signature")
        if not signature_matches(callback, self._secret):
            raise Rejected("PERMISSION_DENIED", "SIGNATURE_INVALID", "bad signature")
        if abs(int(time.time()) - callback.signed_at.seconds) > limits.lockbased_callback_window_s:
            raise Rejected("PERMISSION_DENIED", "SIGNATURE_EXPIRED", "signed too long ago")
        return Callback(
            provider_event_id=callback.provider_event_id,
            trade_id=_row_id(callback.trade_id, "TRADE_NOT_FOUND"),
            payment_id=callback.payment_id,
            outcome=outcome,
            amount_minor=callback.amount.amount_minor,
            currency=callback.amount.currency,
        )
