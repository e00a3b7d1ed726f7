"""The lock-based market: orders, matching and settlement as PostgreSQL transactions.

Written the way the lock-based ledger writes transfers: one READ COMMITTED transaction per
command, every row it changes locked with `SELECT ... FOR UPDATE` first, and a unique key
making each command idempotent.

- PlaceOrder locks the account (a SELL moves its quantity from available to held), inserts
  the order, then repeatedly locks the best resting order of the other side (price-time
  priority, never one of the same account) and matches against it, creating one trade
  PENDING_PAYMENT per match at the resting order's price.
- CancelOrder locks the order, takes its open quantity off the book and, for a SELL, locks
  the account and returns that quantity from held to available.
- A payment callback (already verified by the servicer) locks the trade. Confirmed: the
  seller's and the buyer's accounts are locked and the quantity moves from the seller's held
  to the buyer's available. Failed: the SELL order is locked and the quantity returns to it
  if it still rests, otherwise the seller's account is locked and the quantity returns from
  held to available. Callbacks are deduplicated on the provider event id.

The plain variant locks rows in the order each command meets them: CancelOrder the order
then its account, a callback the trade then the seller's and the buyer's accounts (or the
SELL order, then the account). The sorted variant keeps one global order instead: accounts
first, by id (read unlocked from the order or trade, which never change owners), then the
trade, then order rows by id. Book rows are locked in price-time order, after the placing
account: the plain variant one per statement (each statement sees a new snapshot, so an
order placed meanwhile can be locked after a worse one, and two takers can deadlock); the
sorted variant every row the order may need in one statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import asyncpg

from bench import limits
from bench.lockbased.store import LockOrder, Rejected, Stats, translated

BUY: Final = "BUY"
SELL: Final = "SELL"
PENDING: Final = "PENDING_PAYMENT"
SETTLED: Final = "SETTLED"
CANCELLED: Final = "CANCELLED"
CONFIRMED: Final = "CONFIRMED"
FAILED: Final = "FAILED"
_RESTING: Final = ("OPEN", "PARTIALLY_FILLED")

_LOCK_ACCOUNT: Final = "SELECT status, available FROM accounts WHERE account_id = $1 FOR UPDATE"
_HOLD: Final = (
    "UPDATE accounts SET available = available - $2, held = held + $2 WHERE account_id = $1"
)
_RELEASE: Final = (
    "UPDATE accounts SET available = available + $2, held = held - $2 WHERE account_id = $1"
)
_DELIVER: Final = "UPDATE accounts SET held = held - $2 WHERE account_id = $1"
_RECEIVE: Final = "UPDATE accounts SET available = available + $2 WHERE account_id = $1"
_INSERT_ORDER: Final = (
    "INSERT INTO orders (request_id, account_id, market_id, side, time_in_force, quantity,"
    " price_minor, open_quantity, status, client_order_id)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $6, 'OPEN', $8) RETURNING order_id"
)
_BEST: Final = {
    SELL: (
        "SELECT order_id, account_id, price_minor, open_quantity FROM orders"
        " WHERE market_id = $1 AND side = 'SELL' AND open_quantity > 0 AND price_minor <= $2"
        " AND account_id <> $3 ORDER BY price_minor, order_id LIMIT $4 FOR UPDATE"
    ),
    BUY: (
        "SELECT order_id, account_id, price_minor, open_quantity FROM orders"
        " WHERE market_id = $1 AND side = 'BUY' AND open_quantity > 0 AND price_minor >= $2"
        " AND account_id <> $3 ORDER BY price_minor DESC, order_id LIMIT $4 FOR UPDATE"
    ),
}
_FILL_MAKER: Final = (
    "UPDATE orders SET open_quantity = open_quantity - $2, filled_quantity = filled_quantity + $2,"
    " status = CASE WHEN open_quantity = $2 THEN 'FILLED' ELSE 'PARTIALLY_FILLED' END"
    " WHERE order_id = $1"
)
_INSERT_TRADE: Final = (
    "INSERT INTO trades (market_id, buy_order_id, sell_order_id, buyer_account_id,"
    " seller_account_id, maker_side, quantity, price_minor, amount_due_minor, currency, status)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7::bigint, $8::bigint, $7::bigint * $8::bigint, $9,"
    " 'PENDING_PAYMENT') RETURNING *"
)
_FINISH_ORDER: Final = (
    "UPDATE orders SET open_quantity = $2, filled_quantity = $3, cancelled_quantity = $4,"
    " status = $5 WHERE order_id = $1 RETURNING *"
)
_ORDER: Final = "SELECT * FROM orders WHERE order_id = $1"
_ORDER_BY_REQUEST: Final = "SELECT * FROM orders WHERE request_id = $1"
_LOCK_ORDER: Final = "SELECT * FROM orders WHERE order_id = $1 AND market_id = $2 FOR UPDATE"
_TAKER_TRADES: Final = (
    "SELECT * FROM trades WHERE (buy_order_id = $1 AND maker_side = 'SELL')"
    " OR (sell_order_id = $1 AND maker_side = 'BUY') ORDER BY trade_id"
)
_CANCEL_ORDER: Final = (
    "UPDATE orders SET open_quantity = 0, cancelled_quantity = cancelled_quantity + $2,"
    " status = 'CANCELLED' WHERE order_id = $1 RETURNING *"
)
_RECORD_CANCEL: Final = (
    "INSERT INTO order_cancels (request_id, order_id, cancelled_quantity, released)"
    " VALUES ($1, $2, $3, $4)"
)
_CANCEL_BY_REQUEST: Final = "SELECT * FROM order_cancels WHERE request_id = $1"


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A checked PlaceOrder request."""

    request_id: str
    account_id: str
    market_id: str
    side: str
    time_in_force: str
    quantity_points: int
    price_minor: int
    client_order_id: str


@dataclass(frozen=True, slots=True)
class Placed:
    """An order after placement and matching, and the trades it created as taker."""

    order: asyncpg.Record
    trades: list[asyncpg.Record]


@dataclass(frozen=True, slots=True)
class Cancelled:
    """An order after CancelOrder, with what left the book and what returned to available."""

    order: asyncpg.Record
    cancelled_points: int
    released_points: int


class LockBasedMarket:
    """Market commands as PostgreSQL transactions over locked account, order and trade rows."""

    def __init__(self, pool: asyncpg.Pool, lock_order: LockOrder, stats: Stats) -> None:
        """Run commands on `pool`, counting into the ledger's `stats`."""
        self._pool = pool
        self._lock_order = lock_order
        self.stats = stats
        self.currency = "CNY"

    async def place(self, request: OrderRequest) -> Placed:
        """Place an order and match it; replay the original outcome for a repeated request."""
        async with (
            translated(self.stats),
            self._pool.acquire(timeout=limits.lockbased_pool_wait_s_max) as connection,
        ):
            try:
                async with connection.transaction(isolation="read_committed"):
                    placed = await self._place_in(connection, request)
            except asyncpg.UniqueViolationError:
                placed = await self._replay_order(connection, request)
        self.stats.orders_placed += 1
        self.stats.trades_created += len(placed.trades)
        return placed

    async def _place_in(self, connection: asyncpg.Connection, request: OrderRequest) -> Placed:
        account = await connection.fetchrow(_LOCK_ACCOUNT, request.account_id)
        if account is None:
            raise Rejected("NOT_FOUND", "ACCOUNT_NOT_FOUND", "no such account")
        if account["status"] == "CLOSED":
            raise Rejected("FAILED_PRECONDITION", "ACCOUNT_CLOSED", "account is closed")
        if request.side == SELL:
            if account["status"] != "OPEN":
                raise Rejected("FAILED_PRECONDITION", "ACCOUNT_FROZEN", "account is frozen")
            if account["available"] < request.quantity_points:
                raise Rejected("FAILED_PRECONDITION", "INSUFFICIENT_POINTS", "not enough points")
            await connection.execute(_HOLD, request.account_id, request.quantity_points)
        order_id = await connection.fetchval(
            _INSERT_ORDER, request.request_id, request.account_id, request.market_id,
            request.side, request.time_in_force, request.quantity_points, request.price_minor,
            request.client_order_id,
        )  # fmt: skip
        trades = await self._match(connection, request, order_id)
        filled = sum(trade["quantity"] for trade in trades)
        remaining = request.quantity_points - filled
        if remaining == 0:
            status, open_points, cancelled = "FILLED", 0, 0
        elif request.time_in_force == "IOC":
            status, open_points, cancelled = "CANCELLED", 0, remaining
            if request.side == SELL:
                await connection.execute(_RELEASE, request.account_id, remaining)
        else:
            status, open_points, cancelled = "PARTIALLY_FILLED" if filled else "OPEN", remaining, 0
        order = await connection.fetchrow(
            _FINISH_ORDER, order_id, open_points, filled, cancelled, status
        )
        return Placed(order, trades)

    async def _match(
        self, connection: asyncpg.Connection, request: OrderRequest, order_id: int
    ) -> list[asyncpg.Record]:
        """Lock and fill the best resting orders of the other side, one at a time."""
        other = BUY if request.side == SELL else SELL
        book = (_BEST[other], request.market_id, request.price_minor, request.account_id)
        # Sorted variant: every candidate the order could need (each holds at least one
        # point) locked by one statement, so in one snapshot's price-time order. The plain
        # variant locks the best one, fills it, and asks again: each statement takes a new
        # snapshot, so an order placed meanwhile can be locked after a worse one.
        wanted = min(request.quantity_points, limits.lockbased_matches_max)
        locked = list(await connection.fetch(*book, wanted)) if self._lock_order == "sorted" else []
        remaining = request.quantity_points
        trades: list[asyncpg.Record] = []
        while remaining > 0 and len(trades) < limits.lockbased_matches_max:
            if self._lock_order == "sorted":
                maker = locked.pop(0) if locked else None
            else:
                maker = await connection.fetchrow(*book, 1)
            if maker is None:
                break
            quantity = min(remaining, maker["open_quantity"])
            await connection.execute(_FILL_MAKER, maker["order_id"], quantity)
            taker, maker_id, maker_account = order_id, maker["order_id"], maker["account_id"]
            buy, buyer, sell, seller = (
                (taker, request.account_id, maker_id, maker_account)
                if other == SELL
                else (maker_id, maker_account, taker, request.account_id)
            )
            trade = await connection.fetchrow(
                _INSERT_TRADE, request.market_id, buy, sell, buyer, seller, other, quantity,
                maker["price_minor"], self.currency,
            )  # fmt: skip
            trades.append(trade)
            remaining -= quantity
        return trades

    async def _replay_order(self, connection: asyncpg.Connection, request: OrderRequest) -> Placed:
        order = await connection.fetchrow(_ORDER_BY_REQUEST, request.request_id)
        assert order is not None, "a unique violation means the order exists"
        same = (
            order["account_id"] == request.account_id
            and order["side"] == request.side
            and order["quantity"] == request.quantity_points
            and order["price_minor"] == request.price_minor
        )
        if not same:
            raise Rejected("ALREADY_EXISTS", "IDEMPOTENCY_KEY_REUSED", "request_id reused")
        self.stats.replays += 1
        return Placed(order, list(await connection.fetch(_TAKER_TRADES, order["order_id"])))

    async def cancel(self, request_id: str, market_id: str, order_id: int) -> Cancelled:
        """Take a resting order off the book; a SELL's open quantity returns to available."""
        async with (
            translated(self.stats),
            self._pool.acquire(timeout=limits.lockbased_pool_wait_s_max) as connection,
        ):
            try:
                async with connection.transaction(isolation="read_committed"):
                    cancelled = await self._cancel_in(connection, request_id, market_id, order_id)
            except asyncpg.UniqueViolationError:
                row = await connection.fetchrow(_CANCEL_BY_REQUEST, request_id)
                assert row is not None, "a unique violation means the cancel exists"
                if row["order_id"] != order_id:
                    raise Rejected(
                        "ALREADY_EXISTS", "IDEMPOTENCY_KEY_REUSED", "request_id reused"
                    ) from None
                order = await connection.fetchrow(_ORDER, order_id)
                cancelled = Cancelled(order, row["cancelled_quantity"], row["released"])
        self.stats.orders_cancelled += 1
        return cancelled

    async def _cancel_in(
        self, connection: asyncpg.Connection, request_id: str, market_id: str, order_id: int
    ) -> Cancelled:
        if self._lock_order == "sorted":
            # Accounts before book rows, as PlaceOrder locks them: read the owner unlocked,
            # lock its account, then the order (rechecked under its lock below).
            owner = await connection.fetchrow(_ORDER, order_id)
            if owner is not None and owner["side"] == SELL:
                await connection.fetchrow(_LOCK_ACCOUNT, owner["account_id"])
        order = await connection.fetchrow(_LOCK_ORDER, order_id, market_id)
        if order is None:
            raise Rejected("NOT_FOUND", "ORDER_NOT_FOUND", "no such order")
        if order["status"] not in _RESTING:
            raise Rejected("FAILED_PRECONDITION", "ORDER_NOT_OPEN", "the order does not rest")
        open_points = order["open_quantity"]
        released = 0
        if order["side"] == SELL:
            await connection.fetchrow(_LOCK_ACCOUNT, order["account_id"])
            await connection.execute(_RELEASE, order["account_id"], open_points)
            released = open_points
        order = await connection.fetchrow(_CANCEL_ORDER, order_id, open_points)
        await connection.execute(_RECORD_CANCEL, request_id, order_id, open_points, released)
        return Cancelled(order, open_points, released)


_LOCK_TRADE: Final = "SELECT * FROM trades WHERE trade_id = $1 FOR UPDATE"
_TRADE_ACCOUNTS: Final = (
    "SELECT seller_account_id, buyer_account_id FROM trades WHERE trade_id = $1"
)
_SETTLE_TRADE: Final = (
    "UPDATE trades SET status = 'SETTLED', settled_at = now(), payment_id = $2 WHERE trade_id = $1"
)
_CANCEL_TRADE: Final = (
    "UPDATE trades SET status = 'CANCELLED', cancelled_at = now(),"
    " payment_id = coalesce(payment_id, $2) WHERE trade_id = $1"
)
_FLAG_REFUND: Final = "UPDATE trades SET refund_required = true WHERE trade_id = $1"
_RETURN_TO_BOOK: Final = (
    "UPDATE orders SET open_quantity = open_quantity + $2, filled_quantity = filled_quantity - $2,"
    " status = CASE WHEN filled_quantity = $2 THEN 'OPEN' ELSE 'PARTIALLY_FILLED' END"
    " WHERE order_id = $1"
)
_UNFILL: Final = (
    "UPDATE orders SET filled_quantity = filled_quantity - $2,"
    " cancelled_quantity = cancelled_quantity + $2 WHERE order_id = $1"
)
_CALLBACK: Final = "SELECT * FROM callbacks WHERE provider_event_id = $1"
_RECORD_CALLBACK: Final = (
    "INSERT INTO callbacks (provider_event_id, trade_id, outcome, amount_minor, payment_id,"
    " trade_status, refund_required) VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
_RECORD_PAYMENT: Final = (
    "UPDATE trades SET payment_id = $2 WHERE trade_id = $1 AND payment_id IS NULL"
)


@dataclass(frozen=True, slots=True)
class Callback:
    """A payment callback whose signature the servicer has verified."""

    provider_event_id: str
    trade_id: int
    payment_id: str
    outcome: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Applied:
    """What a callback did: the trade's status after it, and whether it was a redelivery."""

    trade_id: int
    trade_status: str
    refund_required: bool
    duplicate: bool


class LockBasedPayments:
    """Apply payment callbacks and payment-request outcomes to trades, rows locked."""

    def __init__(self, pool: asyncpg.Pool, lock_order: LockOrder, stats: Stats) -> None:
        """Run on `pool`, locking a settlement's two accounts in `lock_order`."""
        self._pool = pool
        self._lock_order = lock_order
        self.stats = stats

    async def apply(self, callback: Callback) -> Applied:
        """Settle or cancel the callback's trade, once per provider event id."""
        async with (
            translated(self.stats),
            self._pool.acquire(timeout=limits.lockbased_pool_wait_s_max) as connection,
        ):
            try:
                async with connection.transaction(isolation="read_committed"):
                    applied = await self._apply_in(connection, callback)
            except asyncpg.UniqueViolationError:
                # A concurrent redelivery of the same event committed first.
                applied = await self._replay(connection, callback)
        return applied

    async def record_payment(self, trade_id: int, payment_id: str) -> None:
        """Remember the provider's payment id of a trade (the callback must name it)."""
        async with translated(self.stats):
            await self._pool.execute(_RECORD_PAYMENT, trade_id, payment_id)

    async def cancel_unpaid(self, trade_id: int) -> None:
        """Cancel a trade whose payment could not be requested; its quantity returns."""
        async with (
            translated(self.stats),
            self._pool.acquire(timeout=limits.lockbased_pool_wait_s_max) as connection,
            connection.transaction(isolation="read_committed"),
        ):
            trade = await connection.fetchrow(_LOCK_TRADE, trade_id)
            if trade is not None and trade["status"] == PENDING:
                await self._cancel_in(connection, trade, "")

    async def _apply_in(self, connection: asyncpg.Connection, callback: Callback) -> Applied:
        seen = await connection.fetchrow(_CALLBACK, callback.provider_event_id)
        if seen is not None:
            return self._duplicate(seen, callback)
        if self._lock_order == "sorted":
            await self._lock_accounts_first(connection, callback.trade_id)
        trade = await connection.fetchrow(_LOCK_TRADE, callback.trade_id)
        if trade is None:
            raise Rejected("NOT_FOUND", "TRADE_NOT_FOUND", "no such trade")
        if callback.currency != trade["currency"]:
            raise Rejected("FAILED_PRECONDITION", "CURRENCY_MISMATCH", "not the trade's currency")
        if callback.amount_minor != trade["amount_due_minor"]:
            raise Rejected("FAILED_PRECONDITION", "AMOUNT_MISMATCH", "not the amount due")
        if trade["payment_id"] not in {None, callback.payment_id}:
            raise Rejected("NOT_FOUND", "PAYMENT_NOT_FOUND", "not the trade's payment")
        status, refund = trade["status"], trade["refund_required"]
        if callback.outcome == CONFIRMED and status == PENDING:
            await self._settle_in(connection, trade, callback.payment_id)
            status = SETTLED
        elif callback.outcome == CONFIRMED and status == CANCELLED and not refund:
            # Paid after cancellation: recorded and flagged for a refund; points never move.
            await connection.execute(_FLAG_REFUND, callback.trade_id)
            refund = True
        elif callback.outcome == FAILED and status == PENDING:
            await self._cancel_in(connection, trade, callback.payment_id)
            status = CANCELLED
        await connection.execute(
            _RECORD_CALLBACK, callback.provider_event_id, callback.trade_id, callback.outcome,
            callback.amount_minor, callback.payment_id, status, refund,
        )  # fmt: skip
        return Applied(callback.trade_id, status, refund, duplicate=False)

    @staticmethod
    async def _lock_accounts_first(connection: asyncpg.Connection, trade_id: int) -> None:
        """Lock the trade's two accounts in id order before any trade or order row.

        The sorted variant's one global order: accounts (by id), then trades and orders, as
        PlaceOrder takes an account before book rows. The trade is read unlocked to learn its
        accounts; they never change, so the read cannot go stale.
        """
        trade = await connection.fetchrow(_TRADE_ACCOUNTS, trade_id)
        if trade is not None:
            for account_id in sorted((trade["seller_account_id"], trade["buyer_account_id"])):
                await connection.fetchrow(_LOCK_ACCOUNT, account_id)

    def _duplicate(self, seen: asyncpg.Record, callback: Callback) -> Applied:
        same = (
            seen["trade_id"] == callback.trade_id
            and seen["outcome"] == callback.outcome
            and seen["amount_minor"] == callback.amount_minor
            and seen["payment_id"] == callback.payment_id
        )
        if not same:
            raise Rejected("ALREADY_EXISTS", "PROVIDER_EVENT_ID_REUSED", "event id reused")
        self.stats.callbacks_duplicate += 1
        return Applied(
            seen["trade_id"], seen["trade_status"], seen["refund_required"], duplicate=True
        )

    async def _replay(self, connection: asyncpg.Connection, callback: Callback) -> Applied:
        seen = await connection.fetchrow(_CALLBACK, callback.provider_event_id)
        assert seen is not None, "a unique violation means the callback was recorded"
        return self._duplicate(seen, callback)

    async def _settle_in(
        self, connection: asyncpg.Connection, trade: asyncpg.Record, payment_id: str
    ) -> None:
        seller, buyer = trade["seller_account_id"], trade["buyer_account_id"]
        # Request order: the seller (whose held points leave), then the buyer.
        ids = sorted((seller, buyer)) if self._lock_order == "sorted" else [seller, buyer]
        for account_id in ids:
            await connection.fetchrow(_LOCK_ACCOUNT, account_id)
        await connection.execute(_DELIVER, seller, trade["quantity"])
        await connection.execute(_RECEIVE, buyer, trade["quantity"])
        await connection.execute(_SETTLE_TRADE, trade["trade_id"], payment_id)
        self.stats.trades_settled += 1

    async def _cancel_in(
        self, connection: asyncpg.Connection, trade: asyncpg.Record, payment_id: str
    ) -> None:
        quantity = trade["quantity"]
        await connection.execute(_CANCEL_TRADE, trade["trade_id"], payment_id or None)
        if self._lock_order == "sorted":
            for order_id in sorted((trade["sell_order_id"], trade["buy_order_id"])):
                await connection.fetchrow(_ORDER + " FOR UPDATE", order_id)
        sell_order = await connection.fetchrow(_ORDER + " FOR UPDATE", trade["sell_order_id"])
        assert sell_order is not None, trade["trade_id"]
        if sell_order["status"] in _RESTING:
            # The SELL order still rests: the quantity goes back to the book, still held.
            await connection.execute(_RETURN_TO_BOOK, trade["sell_order_id"], quantity)
        else:
            await connection.fetchrow(_LOCK_ACCOUNT, trade["seller_account_id"])
            await connection.execute(_RELEASE, trade["seller_account_id"], quantity)
            await connection.execute(_UNFILL, trade["sell_order_id"], quantity)
        await connection.execute(_UNFILL, trade["buy_order_id"], quantity)
        self.stats.trades_cancelled += 1
