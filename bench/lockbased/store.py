"""The lock-based ledger: one PostgreSQL transaction per command, account rows locked FOR UPDATE.

This is the traditional design the benchmark compares Pointex with, written as a competent
engineer would write it: READ COMMITTED, a pooled connection per command, balances checked
under the row locks, a unique `request_id` in the ledger for idempotency, and a bigserial
ledger id as the reply's position. The plain variant locks the two accounts of a movement in
request order (source, then destination), as the paper's traditional design does; the
labelled variant locks them in sorted id order, which removes deadlocks but not the queueing.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import asyncpg

from bench import limits

LockOrder = Literal["request", "sorted"]
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")

MEMBER: Final = "MEMBER"
MERCHANT: Final = "MERCHANT"

_SCHEMA_SQL: Final = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.accounts (
    account_id text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('MEMBER', 'MERCHANT')),
    owner text NOT NULL,
    available bigint NOT NULL CHECK (available >= 0),
    held bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    status text NOT NULL DEFAULT 'OPEN'
);
CREATE TABLE IF NOT EXISTS {schema}.ledger (
    id bigserial PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    command text NOT NULL,
    from_account_id text,
    to_account_id text NOT NULL,
    amount bigint NOT NULL,
    -- The reply's balance, kept so that a retry returns the original result.
    result_available bigint NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
-- The market (bench/lockbased/market.py): orders, the trades their matches create, the
-- cancellations and the payment callbacks, each keyed for idempotency.
CREATE TABLE IF NOT EXISTS {schema}.orders (
    order_id bigserial PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    account_id text NOT NULL,
    market_id text NOT NULL,
    side text NOT NULL CHECK (side IN ('BUY', 'SELL')),
    time_in_force text NOT NULL,
    quantity bigint NOT NULL CHECK (quantity > 0),
    price_minor bigint NOT NULL CHECK (price_minor > 0),
    open_quantity bigint NOT NULL CHECK (open_quantity >= 0),
    filled_quantity bigint NOT NULL DEFAULT 0 CHECK (filled_quantity >= 0),
    cancelled_quantity bigint NOT NULL DEFAULT 0 CHECK (cancelled_quantity >= 0),
    status text NOT NULL,
    client_order_id text NOT NULL DEFAULT '',
    placed_at timestamptz NOT NULL DEFAULT now()
);
-- The book, one partial index per side in price-time priority: lowest ask first, highest
-- bid first, then the oldest order.
CREATE INDEX IF NOT EXISTS orders_asks ON {schema}.orders (market_id, price_minor, order_id)
    WHERE side = 'SELL' AND open_quantity > 0;
CREATE INDEX IF NOT EXISTS orders_bids ON {schema}.orders (market_id, price_minor DESC, order_id)
    WHERE side = 'BUY' AND open_quantity > 0;
CREATE TABLE IF NOT EXISTS {schema}.trades (
    trade_id bigserial PRIMARY KEY,
    market_id text NOT NULL,
    buy_order_id bigint NOT NULL,
    sell_order_id bigint NOT NULL,
    buyer_account_id text NOT NULL,
    seller_account_id text NOT NULL,
    maker_side text NOT NULL,
    quantity bigint NOT NULL CHECK (quantity > 0),
    price_minor bigint NOT NULL,
    amount_due_minor bigint NOT NULL,
    currency text NOT NULL,
    status text NOT NULL,
    payment_id text,
    refund_required boolean NOT NULL DEFAULT false,
    matched_at timestamptz NOT NULL DEFAULT now(),
    settled_at timestamptz,
    cancelled_at timestamptz
);
CREATE TABLE IF NOT EXISTS {schema}.order_cancels (
    request_id text PRIMARY KEY,
    order_id bigint NOT NULL,
    cancelled_quantity bigint NOT NULL,
    released bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.callbacks (
    provider_event_id text PRIMARY KEY,
    trade_id bigint NOT NULL,
    outcome text NOT NULL,
    amount_minor bigint NOT NULL,
    payment_id text NOT NULL,
    trade_status text NOT NULL,
    refund_required boolean NOT NULL
);
"""
_LOCK: Final = "SELECT kind, status, available FROM accounts WHERE account_id = $1 FOR UPDATE"
_DEBIT: Final = (
    "UPDATE accounts SET available = available - $2 WHERE account_id = $1 RETURNING available"
)
_CREDIT: Final = (
    "UPDATE accounts SET available = available + $2 WHERE account_id = $1 RETURNING available"
)
_RECORD: Final = (
    "INSERT INTO ledger (request_id, command, from_account_id, to_account_id, amount,"
    " result_available) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"
)
_ORIGINAL: Final = (
    "SELECT id, command, from_account_id, to_account_id, amount, result_available"
    " FROM ledger WHERE request_id = $1"
)
_OPEN: Final = (
    "INSERT INTO accounts (account_id, kind, owner, available) VALUES ($1, $2, $3, 0)"
    " ON CONFLICT (account_id) DO NOTHING RETURNING account_id"
)


class Rejected(Exception):
    """A command the ledger refuses; `code` is a grpc.StatusCode name, `reason` an ErrorReason."""

    def __init__(self, code: str, reason: str, message: str) -> None:
        """Name the status code, the ErrorInfo reason and a short debug message."""
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


@dataclass
class Stats:
    """What the contender counts, for the benchmark report."""

    commands_ok: int = 0
    rejected: int = 0
    deadlocks: int = 0
    lock_timeouts: int = 0
    aborts: int = 0
    replays: int = 0
    # The market's own counts (zero when it is not served).
    orders_placed: int = 0
    orders_cancelled: int = 0
    trades_created: int = 0
    trades_settled: int = 0
    trades_cancelled: int = 0
    payments_requested: int = 0
    payment_requests_failed: int = 0
    callbacks_duplicate: int = 0
    callbacks_refused: int = 0

    def as_json(self) -> dict[str, int]:
        """Return the counters as a JSON-ready mapping."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Movement:
    """Points moving between two accounts: a transfer, an issue, or a mint (no source)."""

    request_id: str
    command: str
    from_account_id: str | None
    to_account_id: str
    amount_points: int
    from_kind: str | None
    to_kind: str


@dataclass(frozen=True, slots=True)
class Result:
    """A committed movement: its ledger id (the position) and the reply's balance."""

    ledger_id: int
    result_available: int


def schema_name(name: str) -> str:
    """Return `name` if it is a safe PostgreSQL schema identifier, else raise ValueError."""
    if not _SCHEMA_NAME.fullmatch(name):
        raise ValueError(f"schema name {name!r} is not [a-z_][a-z0-9_]*")
    return name


async def create_schema(connection: asyncpg.Connection, schema: str) -> None:
    """Create the contender's schema and tables if they do not exist."""
    # The name was checked by schema_name: only [a-z0-9_] reaches the statement.
    await connection.execute(_SCHEMA_SQL.format(schema=schema_name(schema)))


@contextlib.asynccontextmanager
async def translated(stats: Stats) -> AsyncIterator[None]:
    """Turn the driver's errors inside the block into Rejected, counting deadlocks and aborts."""
    try:
        yield
    except asyncpg.DeadlockDetectedError:
        stats.deadlocks += 1
        stats.aborts += 1
        raise Rejected("ABORTED", "CONCURRENT_MODIFICATION", "deadlock detected") from None
    except asyncpg.LockNotAvailableError:
        stats.lock_timeouts += 1
        stats.aborts += 1
        raise Rejected("ABORTED", "CONCURRENT_MODIFICATION", "lock wait timed out") from None
    except asyncpg.SerializationError:
        stats.aborts += 1
        raise Rejected("ABORTED", "CONCURRENT_MODIFICATION", "serialization failure") from None
    except Rejected:
        stats.rejected += 1
        raise
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
        raise Rejected("UNAVAILABLE", "STORE_UNAVAILABLE", str(error)) from None


class LockBasedLedger:
    """Commands as PostgreSQL transactions over locked account rows."""

    def __init__(self, pool: asyncpg.Pool, lock_order: LockOrder) -> None:
        """Run commands on `pool`, locking the rows of a movement in `lock_order`."""
        self._pool = pool
        self._lock_order = lock_order
        self.stats = Stats()

    def counters(self) -> dict[str, int]:
        """Return the ledger's counters for the stats file."""
        return self.stats.as_json()

    async def open_account(self, request_id: str, account_id: str, kind: str, owner: str) -> int:
        """Insert an account with zero points; return the ledger id of the opening."""
        movement = Movement(request_id, "open", None, account_id, 0, None, kind)
        return (await self._run(movement, self._open_in, owner)).ledger_id

    async def move(self, movement: Movement) -> Result:
        """Move points between two accounts (or mint into one) in one transaction."""
        return await self._run(movement, self._move_in, "")

    async def _run(self, movement: Movement, body: Any, owner: str) -> Result:
        pool_wait_s = limits.lockbased_pool_wait_s_max
        async with (
            translated(self.stats),
            self._pool.acquire(timeout=pool_wait_s) as connection,
        ):
            try:
                async with connection.transaction(isolation="read_committed"):
                    result: Result = await body(connection, movement, owner)
            except asyncpg.UniqueViolationError:
                # Another transaction (an earlier attempt) recorded this request_id first.
                result = await self._replay(connection, movement)
        self.stats.commands_ok += 1
        return result

    async def _open_in(
        self, connection: asyncpg.Connection, movement: Movement, owner: str
    ) -> Result:
        # The ledger row first, so that a retry of this request replays rather than failing
        # with ACCOUNT_ALREADY_EXISTS on its own earlier success.
        result = await self._record(connection, movement, 0)
        opened = await connection.fetchval(_OPEN, movement.to_account_id, movement.to_kind, owner)
        if opened is None:
            raise Rejected("ALREADY_EXISTS", "ACCOUNT_ALREADY_EXISTS", "account exists")
        return result

    async def _move_in(self, connection: asyncpg.Connection, movement: Movement, _: str) -> Result:
        rows = await self._lock_rows(connection, movement)
        to_row = rows[movement.to_account_id]
        _check_kind(to_row, movement.to_kind)
        if to_row["status"] == "CLOSED":
            raise Rejected("FAILED_PRECONDITION", "ACCOUNT_CLOSED", "destination is closed")
        if movement.from_account_id is None:
            balance = await connection.fetchval(
                _CREDIT, movement.to_account_id, movement.amount_points
            )
            return await self._record(connection, movement, balance)
        from_row = rows[movement.from_account_id]
        assert movement.from_kind is not None
        _check_kind(from_row, movement.from_kind)
        if from_row["status"] != "OPEN":
            raise Rejected("FAILED_PRECONDITION", f"ACCOUNT_{from_row['status']}", "source")
        if from_row["available"] < movement.amount_points:
            raise Rejected("FAILED_PRECONDITION", "INSUFFICIENT_POINTS", "not enough points")
        balance = await connection.fetchval(
            _DEBIT, movement.from_account_id, movement.amount_points
        )
        await connection.execute(_CREDIT, movement.to_account_id, movement.amount_points)
        return await self._record(connection, movement, balance)

    async def _lock_rows(
        self, connection: asyncpg.Connection, movement: Movement
    ) -> dict[str, asyncpg.Record]:
        ids = [movement.to_account_id]
        if movement.from_account_id is not None:
            # Request order: the source first, as the paper's traditional design does.
            ids.insert(0, movement.from_account_id)
        if self._lock_order == "sorted":
            ids.sort()
        rows: dict[str, asyncpg.Record] = {}
        for account_id in ids:
            row = await connection.fetchrow(_LOCK, account_id)
            if row is None:
                raise Rejected("NOT_FOUND", "ACCOUNT_NOT_FOUND", f"no account {account_id}")
            rows[account_id] = row
        return rows

    @staticmethod
    async def _record(connection: asyncpg.Connection, movement: Movement, balance: int) -> Result:
        ledger_id = await connection.fetchval(
            _RECORD,
            movement.request_id,
            movement.command,
            movement.from_account_id,
            movement.to_account_id,
            movement.amount_points,
            balance,
        )
        return Result(ledger_id, balance)

    async def _replay(self, connection: asyncpg.Connection, movement: Movement) -> Result:
        row = await connection.fetchrow(_ORIGINAL, movement.request_id)
        assert row is not None, "a unique violation means the row exists"
        same = (
            row["command"] == movement.command
            and row["from_account_id"] == movement.from_account_id
            and row["to_account_id"] == movement.to_account_id
            and row["amount"] == movement.amount_points
        )
        if not same:
            raise Rejected("ALREADY_EXISTS", "IDEMPOTENCY_KEY_REUSED", "request_id reused")
        self.stats.replays += 1
        return Result(row["id"], row["result_available"])


def _check_kind(row: asyncpg.Record, kind: str) -> None:
    if row["kind"] != kind:
        raise Rejected("FAILED_PRECONDITION", "ACCOUNT_KIND_MISMATCH", f"expected a {kind}")
