"""The market scenario's end-of-run check: every trade paid or cancelled, and points conserved.

Once the load has stopped, the runner waits until no trade is pending payment (the sandbox's
last callbacks), reads the books and judges them:

- every trader's available + held adds up to what it was funded with (Σ unchanged);
- the buyers gained exactly the settled quantity and the sellers lost exactly that;
- escrow (I2): each seller's held points equal the open quantity of its resting SELL
  orders plus the quantity of its trades pending payment;
- at least one trade settled, and nothing is left pending.

Pointex is read through its own query server (`QueryService`, read-your-writes on a
position the command server just returned, plus its `CheckInvariants` audit); the lock-based
contender is read from its tables. The settled-trades figure comes from these books, not
from the load generator, so it counts only settlements that really happened.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import grpc

from bench import limits
from bench.accounts import OWNER_PARTNER_ID, auth_metadata, member_id, request_id
from bench.market_load import is_seller
from pointex.v1 import command_service_pb2 as cs
from pointex.v1 import (
    command_service_pb2_grpc,
    common_pb2,
    query_service_pb2,
    query_service_pb2_grpc,
)

PENDING: Final = "PENDING_PAYMENT"
SETTLED: Final = "SETTLED"
CANCELLED: Final = "CANCELLED"
# A read may first wait for the query server to catch up with the command server.
_CALL_DEADLINE_S: Final = limits.market_catch_up_wait_s_max
_POLL_S: Final = 0.5
_STATUS_NAMES: Final = {
    common_pb2.TRADE_STATUS_PENDING_PAYMENT: PENDING,
    common_pb2.TRADE_STATUS_SETTLED: SETTLED,
    common_pb2.TRADE_STATUS_CANCELLED: CANCELLED,
}
_MS_PER_S: Final = 1000
_NS_PER_MS: Final = 1_000_000


@dataclass
class Books:
    """What the check reads of one contender after a market run."""

    # available and held points of each trader.
    balances: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Trades by status (PENDING_PAYMENT, SETTLED, CANCELLED).
    trades: Counter[str] = field(default_factory=Counter)
    settled_points: int = 0
    # When each settled trade settled, in Unix milliseconds.
    settled_at_ms: list[int] = field(default_factory=list)
    # Sellers whose held points differ from their open SELL quantity plus pending trades.
    escrow_violations: int = 0
    # Confirmations that came after their trade was cancelled (refund flagged).
    refunds: int = 0
    # The contender's own audit of its invariants, when it has one (Pointex).
    audit_ok: bool | None = None


def trader_ids(traders: int) -> list[str]:
    """Return the traders' account ids: member k is caller k's account."""
    return [member_id(k) for k in range(traders)]


def judge(books: Books, traders: int) -> dict[str, Any]:
    """Return the check's verdict: the figures and every failed condition (none: ok)."""
    funding = limits.member_funding_points
    totals = {k: sum(books.balances.get(member_id(k), (0, 0))) for k in range(traders)}
    sellers_lost = sum(funding - total for k, total in totals.items() if is_seller(k))
    buyers_gained = sum(total - funding for k, total in totals.items() if not is_seller(k))
    points_before = traders * funding
    points_after = sum(totals.values())
    failures = []
    if len(books.balances) != traders:
        failures.append(f"{traders - len(books.balances)} traders not found")
    if points_after != points_before:
        failures.append(f"points not conserved: {points_before} before, {points_after} after")
    if buyers_gained != books.settled_points or sellers_lost != books.settled_points:
        failures.append(
            f"settled {books.settled_points} points, but buyers gained {buyers_gained} and "
            f"sellers lost {sellers_lost}"
        )
    if books.escrow_violations:
        failures.append(f"{books.escrow_violations} sellers' held points break escrow (I2)")
    if not books.trades[SETTLED]:
        failures.append("no trade settled: nothing to check the figures against")
    if books.trades[PENDING]:
        failures.append(f"{books.trades[PENDING]} trades still pending payment")
    if books.audit_ok is False:
        failures.append("the contender's own invariant audit failed")
    return {
        "ok": not failures,
        "failures": failures,
        "trades": sum(books.trades.values()),
        "trades_settled": books.trades[SETTLED],
        "trades_cancelled": books.trades[CANCELLED],
        "trades_pending": books.trades[PENDING],
        "settled_points": books.settled_points,
        "refunds_flagged": books.refunds,
        "points_before": points_before,
        "points_after": points_after,
        "audit_ok": books.audit_ok,
    }


async def settled_books(read: Callable[[], Awaitable[Books]]) -> Books:
    """Read the books until no trade is pending payment, or `market_settle_wait_s_max` passed."""
    deadline_s = time.monotonic() + limits.market_settle_wait_s_max
    while True:
        books = await read()
        if not books.trades[PENDING] or time.monotonic() >= deadline_s:
            return books
        await asyncio.sleep(_POLL_S)


def settled_in(books: Books, window_start_ms: int, window_end_ms: int) -> int:
    """Return how many trades settled inside [window_start_ms, window_end_ms)."""
    return sum(1 for at_ms in books.settled_at_ms if window_start_ms <= at_ms < window_end_ms)


_LOCKBASED_BALANCES: Final = (
    "SELECT account_id, available, held FROM accounts WHERE account_id = ANY($1::text[])"
)
_LOCKBASED_TRADES: Final = (
    "SELECT status, count(*) AS trades, coalesce(sum(quantity), 0)::bigint AS points,"
    " count(*) FILTER (WHERE refund_required) AS refunds FROM trades GROUP BY status"
)
_LOCKBASED_SETTLED_AT: Final = (
    "SELECT (extract(epoch FROM settled_at) * 1000)::bigint FROM trades WHERE status = 'SETTLED'"
)
# I2 per account: held = open SELL quantity + quantity pending payment as seller.
_LOCKBASED_ESCROW: Final = """
SELECT count(*) FROM accounts a WHERE a.held <>
    coalesce((SELECT sum(o.open_quantity) FROM orders o
              WHERE o.account_id = a.account_id AND o.side = 'SELL'), 0)
  + coalesce((SELECT sum(t.quantity) FROM trades t
              WHERE t.seller_account_id = a.account_id AND t.status = 'PENDING_PAYMENT'), 0)
"""


async def read_lockbased(pg_dsn: str, schema: str, traders: int) -> Books:
    """Read the lock-based contender's accounts, trades and escrow from its tables."""
    connection = await asyncpg.connect(
        pg_dsn, timeout=_CALL_DEADLINE_S, server_settings={"search_path": schema}
    )
    try:
        books = Books()
        for row in await connection.fetch(_LOCKBASED_BALANCES, trader_ids(traders)):
            books.balances[row["account_id"]] = (row["available"], row["held"])
        for row in await connection.fetch(_LOCKBASED_TRADES):
            books.trades[row["status"]] = row["trades"]
            books.refunds += row["refunds"]
            if row["status"] == SETTLED:
                books.settled_points = row["points"]
        books.settled_at_ms = [row[0] for row in await connection.fetch(_LOCKBASED_SETTLED_AT)]
        books.escrow_violations = await connection.fetchval(_LOCKBASED_ESCROW)
    finally:
        await connection.close()
    return books


async def probe_position(command_target: str, token: str) -> common_pb2.Position:
    """Return a position at or past every commit so far: the reply to a fresh OpenAccount.

    The probe account is opened empty and owned by the benchmark; no check counts it.
    """
    request = cs.OpenAccountRequest(
        request_id=request_id(),
        account_id=f"bench-probe-{request_id()[:12]}",
        kind=common_pb2.ACCOUNT_KIND_MEMBER,
        owner_partner_id=OWNER_PARTNER_ID,
    )
    async with grpc.aio.insecure_channel(command_target) as channel:
        stub = command_service_pb2_grpc.CommandServiceStub(channel)
        reply = await stub.OpenAccount(
            request, metadata=auth_metadata(token), timeout=_CALL_DEADLINE_S
        )
    return reply.position


async def _pointex_trades(
    stub: query_service_pb2_grpc.QueryServiceAsyncStub,
    metadata: tuple[tuple[str, str], ...],
    position: common_pb2.Position,
    books: Books,
) -> None:
    page_token = ""
    while True:
        request = query_service_pb2.ListTradesRequest(
            min_position=position,
            market_id=limits.market_id,
            page_size=limits.market_page_size_max,
            page_token=page_token,
        )
        reply = await stub.ListTrades(request, metadata=metadata, timeout=_CALL_DEADLINE_S)
        for trade in reply.trades:
            status = _STATUS_NAMES.get(trade.status, str(trade.status))
            books.trades[status] += 1
            books.refunds += trade.refund_required
            if status == SETTLED:
                books.settled_points += trade.quantity_points
                at = trade.settled_at
                books.settled_at_ms.append(at.seconds * _MS_PER_S + at.nanos // _NS_PER_MS)
        if not reply.next_page_token:
            return
        page_token = reply.next_page_token


async def read_pointex(command_target: str, query_target: str, token: str, traders: int) -> Books:
    """Read Pointex's books through its query server, as of a position just committed."""
    position = await probe_position(command_target, token)
    metadata = auth_metadata(token)
    books = Books()
    async with grpc.aio.insecure_channel(query_target) as channel:
        stub = query_service_pb2_grpc.QueryServiceStub(channel)
        # The first read waits (min_position) until the projections have caught up.
        await _pointex_trades(stub, metadata, position, books)
        for account_id in trader_ids(traders):
            reply = await stub.GetAccount(
                query_service_pb2.GetAccountRequest(min_position=position, account_id=account_id),
                metadata=metadata,
                timeout=_CALL_DEADLINE_S,
            )
            account = reply.account
            books.balances[account_id] = (account.available_points, account.held_points)
        audit = await stub.CheckInvariants(
            query_service_pb2.CheckInvariantsRequest(min_position=position),
            metadata=metadata,
            timeout=_CALL_DEADLINE_S,
        )
    books.audit_ok = audit.ok
    books.escrow_violations = sum(
        1 for v in audit.violations if v.invariant == query_service_pb2.INVARIANT_ESCROW
    )
    return books
