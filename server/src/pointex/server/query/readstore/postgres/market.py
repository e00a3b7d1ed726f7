"""The market reads and writes of the PostgreSQL read store, mixed into `PostgresReadStore`."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from pointex.server import limits
from pointex.server.query.readstore import market_rows, rows
from pointex.server.query.readstore.market_rows import (
    LevelRow,
    MarketRow,
    MarketStats,
    OrderFilter,
    OrderRow,
    TradeFilter,
    TradeRow,
)
from pointex.server.query.readstore.port import AccountRow, Changes
from pointex.server.query.readstore.postgres import market_sql, sql
from pointex.server.store_errors import StoreError


class PostgresMarketReads:
    """Market reads; the store provides `_active`, `_generation`, `_connection`, `_transaction`."""

    _active: int

    def _generation(self, generation: int | None) -> int:
        raise NotImplementedError  # pragma: no cover - provided by the store.

    def _connection(self) -> contextlib.AbstractAsyncContextManager[Any]:
        raise NotImplementedError  # pragma: no cover - provided by the store.

    def _transaction(
        self, *, snapshot: bool = False
    ) -> contextlib.AbstractAsyncContextManager[Any]:
        raise NotImplementedError  # pragma: no cover - provided by the store.

    async def _fetch(self, statement: str, generation: int, *parameters: Any) -> list[Any]:
        async with self._connection() as connection:
            return list(await connection.fetch(sql.render(statement, generation), *parameters))

    async def orders(
        self, order_ids: list[str], generation: int | None = None
    ) -> dict[str, OrderRow]:
        """Return the named orders that exist, by id."""
        if not order_ids:
            return {}
        found = await self._fetch(market_sql.ORDERS_BY_ID, self._generation(generation), order_ids)
        return {row[0]: market_rows.order_row(row) for row in found}

    async def trades(
        self, trade_ids: list[str], generation: int | None = None
    ) -> dict[str, TradeRow]:
        """Return the named trades that exist, by id."""
        if not trade_ids:
            return {}
        found = await self._fetch(market_sql.TRADES_BY_ID, self._generation(generation), trade_ids)
        return {row[0]: market_rows.trade_row(row) for row in found}

    async def markets(self, generation: int | None = None) -> list[MarketRow]:
        """Return every configured market in market_id order."""
        found = await self._fetch(market_sql.MARKETS, self._generation(generation))
        return [market_rows.market_row(row) for row in found]

    async def list_orders(
        self, order_filter: OrderFilter, before_position: int, limit: int
    ) -> list[OrderRow]:
        """Return up to `limit` matching orders placed before a position, newest first."""
        assert 1 <= limit <= limits.read_page_items_max + 1, limit
        found = await self._fetch(
            market_sql.LIST_ORDERS,
            self._active,
            before_position or rows.POSITION_END,
            order_filter.owner_partner_id,
            order_filter.account_id,
            order_filter.market_id,
            list(order_filter.statuses) or None,
            order_filter.side,
            limit,
        )
        return [market_rows.order_row(row) for row in found]

    async def list_trades(
        self, trade_filter: TradeFilter, before_position: int, limit: int
    ) -> list[TradeRow]:
        """Return up to `limit` matching trades matched before a position, newest first."""
        assert 1 <= limit <= limits.read_page_items_max + 1, limit
        found = await self._fetch(
            market_sql.LIST_TRADES,
            self._active,
            before_position or rows.POSITION_END,
            trade_filter.owner_partner_id,
            trade_filter.account_id,
            trade_filter.market_id,
            trade_filter.order_id,
            list(trade_filter.statuses) or None,
            trade_filter.refund_required_only,
            limit,
        )
        return [market_rows.trade_row(row) for row in found]

    async def price_levels(self, market_id: str, side: str, limit: int) -> list[LevelRow]:
        """Return the best `limit` levels of one side of a market's book."""
        statement = market_sql.BIDS if side == "BUY" else market_sql.ASKS
        found = await self._fetch(statement, self._active, market_id, limit)
        return [market_rows.level_row(row) for row in found]

    async def market_stats(self, market_id: str, start_us: int, end_us: int) -> MarketStats:
        """Return the figures of a market's trades not cancelled, from one snapshot."""
        generation = self._active
        async with self._transaction(snapshot=True) as connection:

            async def fetch(statement: str, *parameters: Any) -> list[Any]:
                return list(await connection.fetch(sql.render(statement, generation), *parameters))

            last = await fetch(market_sql.LAST_TRADE, market_id)
            ((count, high, low, volume, notional),) = await fetch(
                market_sql.WINDOW_FIGURES, market_id, start_us, end_us
            )
            first = await fetch(market_sql.WINDOW_OPEN, market_id, start_us, end_us)
        return MarketStats(
            last_price_minor=int(last[0][0]) if last else 0,
            last_trade_at_us=int(last[0][1]) if last else 0,
            open_price_minor=int(first[0][0]) if first else 0,
            high_price_minor=int(high),
            low_price_minor=int(low),
            volume_points=int(volume),
            volume_minor=int(notional),
            trade_count=int(count),
        )


async def audit_market(
    fetch: Any, listed_max: int
) -> tuple[int, int, tuple[tuple[AccountRow, int], ...], int]:
    """Return the open SELL and pending sums, and the I2 mismatches (listed, counted)."""
    ((open_sell, pending),) = await fetch(market_sql.AUDIT_MARKET_SUMS)
    escrow = await fetch(market_sql.AUDIT_ESCROW, listed_max)
    ((escrow_count,),) = await fetch(market_sql.AUDIT_ESCROW_COUNT)
    listed = tuple((AccountRow(*row[:-1]), int(row[-1])) for row in escrow)
    return int(open_sell), int(pending), listed, int(escrow_count)


async def write_market_changes(connection: Any, changes: Changes, generation: int) -> None:
    """Write the market rows of one batch, one array statement per table (in the transaction)."""

    async def columns(statement: str, values: Sequence[Sequence[Any]]) -> None:
        if values:
            arrays = [list(column) for column in zip(*values, strict=True)]
            await connection.execute(sql.render(statement, generation), *arrays)

    await columns(
        market_sql.UPSERT_MARKETS, [market_rows.market_values(m) for m in changes.markets]
    )
    await columns(market_sql.UPSERT_ORDERS, [market_rows.order_values(o) for o in changes.orders])
    await columns(market_sql.UPSERT_TRADES, [market_rows.trade_values(t) for t in changes.trades])
    await columns(market_sql.ADD_LEVELS, [market_rows.level_values(v) for v in changes.levels])
    await columns(
        market_sql.DROP_EMPTY_LEVELS, [(v.market_id, v.side, v.price_minor) for v in changes.levels]
    )
    # Removals first: a batch can end one step of an order's escrow and start the next.
    if changes.escrow_removed:
        status = await connection.execute(
            sql.render(market_sql.DELETE_ESCROW, generation), list(changes.escrow_removed)
        )
        if status != f"DELETE {len(changes.escrow_removed)}":
            raise StoreError(f"read store lost escrow rows: {changes.escrow_removed}")
    await columns(
        market_sql.INSERT_ESCROW, [rows.in_flight_values(e) for e in changes.escrow_added]
    )
