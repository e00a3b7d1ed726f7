"""Hold the SQLite statements of the market read models; every value is a bind parameter.

``{p}`` is a generation's table prefix, as in `sql`. An empty string or a NULL parameter
means "any" for a filter, so every statement is fixed text.
"""

from __future__ import annotations

from pointex.server.query.readstore.market_rows import (
    LEVEL_COLUMNS,
    MARKET_COLUMNS,
    ORDER_COLUMNS,
    TRADE_COLUMNS,
)
from pointex.server.query.readstore.sqlite.sql import ACCOUNT_COLUMNS

UPSERT_MARKET = f"""
INSERT INTO {{p}}markets ({MARKET_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (market_id) DO UPDATE SET
    currency = excluded.currency,
    body = excluded.body,
    configured_position = excluded.configured_position,
    updated_at_us = excluded.updated_at_us,
    configurations = excluded.configurations,
    fee_schedule_version = excluded.fee_schedule_version
"""  # noqa: S608 - constant column list.
MARKETS = f"SELECT {MARKET_COLUMNS} FROM {{p}}markets ORDER BY market_id"  # noqa: S608

_ORDER_VALUES = ", ".join(f"?{n}" for n in range(1, 21))
UPSERT_ORDER = f"""
INSERT OR REPLACE INTO {{p}}orders ({ORDER_COLUMNS}) VALUES ({_ORDER_VALUES})
"""  # noqa: S608 - constant column list.
ORDERS_BY_ID = f"""
SELECT {ORDER_COLUMNS} FROM {{p}}orders WHERE order_id IN (SELECT value FROM json_each(?1))
"""  # noqa: S608 - constant column list.
LIST_ORDERS = f"""
SELECT {ORDER_COLUMNS} FROM {{p}}orders
WHERE placed_position < ?1 AND status <> 'PENDING'
    AND (?2 = '' OR owner_partner_id = ?2)
    AND (?3 = '' OR account_id = ?3)
    AND (?4 = '' OR market_id = ?4)
    AND (?5 IS NULL OR status IN (SELECT value FROM json_each(?5)))
    AND (?6 = '' OR side = ?6)
ORDER BY placed_position DESC LIMIT ?7
"""  # noqa: S608 - constant column list.

_TRADE_VALUES = ", ".join(f"?{n}" for n in range(1, 30))
UPSERT_TRADE = f"""
INSERT OR REPLACE INTO {{p}}trades ({TRADE_COLUMNS}) VALUES ({_TRADE_VALUES})
"""  # noqa: S608 - constant column list.
TRADES_BY_ID = f"""
SELECT {TRADE_COLUMNS} FROM {{p}}trades WHERE trade_id IN (SELECT value FROM json_each(?1))
"""  # noqa: S608 - constant column list.
LIST_TRADES = f"""
SELECT {TRADE_COLUMNS} FROM {{p}}trades
WHERE matched_position < ?1
    AND (?2 = '' OR buyer_owner_partner_id = ?2 OR seller_owner_partner_id = ?2)
    AND (?3 = '' OR buyer_account_id = ?3 OR seller_account_id = ?3)
    AND (?4 = '' OR market_id = ?4)
    AND (?5 = '' OR buy_order_id = ?5 OR sell_order_id = ?5)
    AND (?6 IS NULL OR status IN (SELECT value FROM json_each(?6)))
    AND (?7 = 0 OR refund_required = 1)
ORDER BY matched_position DESC LIMIT ?8
"""  # noqa: S608 - constant column list.

ADD_LEVEL = f"""
INSERT INTO {{p}}price_levels ({LEVEL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (market_id, side, price_minor) DO UPDATE SET
    quantity_points = quantity_points + excluded.quantity_points,
    order_count = order_count + excluded.order_count
"""  # noqa: S608 - constant column list.
DROP_EMPTY_LEVEL = """
DELETE FROM {p}price_levels
WHERE market_id = ?1 AND side = ?2 AND price_minor = ?3 AND order_count = 0
"""
BIDS = f"""
SELECT {LEVEL_COLUMNS} FROM {{p}}price_levels WHERE market_id = ?1 AND side = 'BUY'
ORDER BY price_minor DESC LIMIT ?2
"""  # noqa: S608 - constant column list.
ASKS = f"""
SELECT {LEVEL_COLUMNS} FROM {{p}}price_levels WHERE market_id = ?1 AND side = 'SELL'
ORDER BY price_minor LIMIT ?2
"""  # noqa: S608 - constant column list.

INSERT_ESCROW = """
INSERT INTO {p}escrow (process_id, account_id, amount_points, position) VALUES (?1, ?2, ?3, ?4)
"""
DELETE_ESCROW = "DELETE FROM {p}escrow WHERE process_id = ?1"

LAST_TRADE = """
SELECT price_minor, matched_at_us FROM {p}trades
WHERE market_id = ?1 AND status <> 'CANCELLED' ORDER BY matched_position DESC LIMIT 1
"""
_WINDOW = "market_id = ?1 AND status <> 'CANCELLED' AND matched_at_us >= ?2 AND matched_at_us < ?3"
WINDOW_FIGURES = f"""
SELECT count(*), coalesce(max(price_minor), 0), coalesce(min(price_minor), 0),
    coalesce(sum(quantity_points), 0), coalesce(sum(notional_minor), 0)
FROM {{p}}trades WHERE {_WINDOW}
"""  # noqa: S608 - constant fragment.
WINDOW_OPEN = f"""
SELECT price_minor FROM {{p}}trades WHERE {_WINDOW} ORDER BY matched_position LIMIT 1
"""  # noqa: S608 - constant fragment.

# I2 per account: what its resting SELL orders, its trades pending payment as seller and its
# escrow steps in flight account for. ?1 is the number of mismatching accounts to list.
_ESCROW_EXPECTED = """
WITH expected (account_id, points) AS (
    SELECT account_id, sum(points) FROM (
        SELECT account_id, open_quantity_points AS points FROM {p}orders
        WHERE side = 'SELL' AND status IN ('OPEN', 'PARTIALLY_FILLED')
        UNION ALL
        SELECT seller_account_id, quantity_points FROM {p}trades
        WHERE status = 'PENDING_PAYMENT'
        UNION ALL
        SELECT account_id, amount_points FROM {p}escrow
    ) GROUP BY account_id
)
"""
_ESCROW_MISMATCH = """
FROM {p}accounts AS a LEFT JOIN expected AS e USING (account_id)
WHERE a.held_points <> coalesce(e.points, 0)
"""
AUDIT_ESCROW = f"""{_ESCROW_EXPECTED}
SELECT {ACCOUNT_COLUMNS}, coalesce(e.points, 0) {_ESCROW_MISMATCH}
ORDER BY account_id LIMIT ?1
"""
AUDIT_ESCROW_COUNT = f"{_ESCROW_EXPECTED} SELECT count(*) {_ESCROW_MISMATCH}"
AUDIT_MARKET_SUMS = """
SELECT
    (SELECT coalesce(sum(open_quantity_points), 0) FROM {p}orders
     WHERE side = 'SELL' AND status IN ('OPEN', 'PARTIALLY_FILLED')),
    (SELECT coalesce(sum(quantity_points), 0) FROM {p}trades WHERE status = 'PENDING_PAYMENT')
"""
