"""Hold the PostgreSQL statements of the market read models; every value is a bind parameter.

``{p}`` is a generation's table prefix, as in `sql`. A batch writes each table with one
statement whose columns travel as arrays (``unnest``). An empty string or a NULL parameter
means "any" for a filter, so every statement is fixed text.
"""

from __future__ import annotations

from pointex.server.query.readstore.market_rows import (
    LEVEL_COLUMNS,
    MARKET_COLUMNS,
    ORDER_COLUMNS,
    TRADE_COLUMNS,
)
from pointex.server.query.readstore.postgres.sql import ACCOUNT_COLUMNS


def _excluded(columns: str) -> str:
    """Return ``c = excluded.c`` for every column but the first (the key)."""
    names = [name.strip() for name in columns.split(",")][1:]
    return ",\n    ".join(f"{name} = excluded.{name}" for name in names)


UPSERT_MARKETS = f"""
INSERT INTO {{p}}markets ({MARKET_COLUMNS})
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::bytea[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[]
)
ON CONFLICT (market_id) DO UPDATE SET
    {_excluded(MARKET_COLUMNS)}
"""  # noqa: S608 - constant column list.
MARKETS = f"SELECT {MARKET_COLUMNS} FROM {{p}}markets ORDER BY market_id"  # noqa: S608

# Column types of ORDER_COLUMNS, in order.
_ORDER_TYPES = (
    ["text"] * 7 + ["bigint"] * 2 + ["text"] + ["bigint"] * 4 + ["text"] * 3 + ["bigint"] * 3
)
_ORDER_ARRAYS = ", ".join(f"${n}::{t}[]" for n, t in enumerate(_ORDER_TYPES, start=1))
UPSERT_ORDERS = f"""
INSERT INTO {{p}}orders ({ORDER_COLUMNS})
SELECT * FROM unnest({_ORDER_ARRAYS})
ON CONFLICT (order_id) DO UPDATE SET
    {_excluded(ORDER_COLUMNS)}
"""  # noqa: S608 - constant column list.
ORDERS_BY_ID = f"""
SELECT {ORDER_COLUMNS} FROM {{p}}orders WHERE order_id = ANY($1::text[])
"""  # noqa: S608 - constant column list.
LIST_ORDERS = f"""
SELECT {ORDER_COLUMNS} FROM {{p}}orders
WHERE placed_position < $1 AND status <> 'PENDING'
    AND ($2 = '' OR owner_partner_id = $2)
    AND ($3 = '' OR account_id = $3)
    AND ($4 = '' OR market_id = $4)
    AND ($5::text[] IS NULL OR status = ANY($5::text[]))
    AND ($6 = '' OR side = $6)
ORDER BY placed_position DESC LIMIT $7
"""  # noqa: S608 - constant column list.

# Column types of TRADE_COLUMNS, in order.
_TRADE_TYPES = (
    ["text"] * 10
    + ["bigint"] * 2
    + ["text"]
    + ["bigint"] * 6
    + ["text"] * 4
    + ["boolean"]
    + ["bigint"] * 5
)
_TRADE_ARRAYS = ", ".join(f"${n}::{t}[]" for n, t in enumerate(_TRADE_TYPES, start=1))
UPSERT_TRADES = f"""
INSERT INTO {{p}}trades ({TRADE_COLUMNS})
SELECT * FROM unnest({_TRADE_ARRAYS})
ON CONFLICT (trade_id) DO UPDATE SET
    {_excluded(TRADE_COLUMNS)}
"""  # noqa: S608 - constant column list.
TRADES_BY_ID = f"""
SELECT {TRADE_COLUMNS} FROM {{p}}trades WHERE trade_id = ANY($1::text[])
"""  # noqa: S608 - constant column list.
LIST_TRADES = f"""
SELECT {TRADE_COLUMNS} FROM {{p}}trades
WHERE matched_position < $1
    AND ($2 = '' OR buyer_owner_partner_id = $2 OR seller_owner_partner_id = $2)
    AND ($3 = '' OR buyer_account_id = $3 OR seller_account_id = $3)
    AND ($4 = '' OR market_id = $4)
    AND ($5 = '' OR buy_order_id = $5 OR sell_order_id = $5)
    AND ($6::text[] IS NULL OR status = ANY($6::text[]))
    AND (NOT $7::boolean OR refund_required)
ORDER BY matched_position DESC LIMIT $8
"""  # noqa: S608 - constant column list.

ADD_LEVELS = f"""
INSERT INTO {{p}}price_levels AS l ({LEVEL_COLUMNS})
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
ON CONFLICT (market_id, side, price_minor) DO UPDATE SET
    quantity_points = l.quantity_points + excluded.quantity_points,
    order_count = l.order_count + excluded.order_count
"""  # noqa: S608 - constant column list.
DROP_EMPTY_LEVELS = """
DELETE FROM {p}price_levels AS l
USING unnest($1::text[], $2::text[], $3::bigint[]) AS k (market_id, side, price_minor)
WHERE l.market_id = k.market_id AND l.side = k.side AND l.price_minor = k.price_minor
    AND l.order_count = 0
"""
BIDS = f"""
SELECT {LEVEL_COLUMNS} FROM {{p}}price_levels WHERE market_id = $1 AND side = 'BUY'
ORDER BY price_minor DESC LIMIT $2
"""  # noqa: S608 - constant column list.
ASKS = f"""
SELECT {LEVEL_COLUMNS} FROM {{p}}price_levels WHERE market_id = $1 AND side = 'SELL'
ORDER BY price_minor LIMIT $2
"""  # noqa: S608 - constant column list.

INSERT_ESCROW = """
INSERT INTO {p}escrow (process_id, account_id, amount_points, position)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
"""
DELETE_ESCROW = "DELETE FROM {p}escrow WHERE process_id = ANY($1::text[])"

LAST_TRADE = """
SELECT price_minor, matched_at_us FROM {p}trades
WHERE market_id = $1 AND status <> 'CANCELLED' ORDER BY matched_position DESC LIMIT 1
"""
_WINDOW = "market_id = $1 AND status <> 'CANCELLED' AND matched_at_us >= $2 AND matched_at_us < $3"
WINDOW_FIGURES = f"""
SELECT count(*), coalesce(max(price_minor), 0), coalesce(min(price_minor), 0),
    coalesce(sum(quantity_points), 0), coalesce(sum(notional_minor), 0)
FROM {{p}}trades WHERE {_WINDOW}
"""  # noqa: S608 - constant fragment.
WINDOW_OPEN = f"""
SELECT price_minor FROM {{p}}trades WHERE {_WINDOW} ORDER BY matched_position LIMIT 1
"""  # noqa: S608 - constant fragment.

# I2 per account, as on SQLite. $1 is the number of mismatching accounts to list.
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
    ) AS steps GROUP BY account_id
)
"""
_ESCROW_MISMATCH = """
FROM {p}accounts AS a LEFT JOIN expected AS e USING (account_id)
WHERE a.held_points <> coalesce(e.points, 0)
"""
AUDIT_ESCROW = f"""{_ESCROW_EXPECTED}
SELECT {ACCOUNT_COLUMNS}, coalesce(e.points, 0) {_ESCROW_MISMATCH}
ORDER BY account_id LIMIT $1
"""
AUDIT_ESCROW_COUNT = f"{_ESCROW_EXPECTED} SELECT count(*) {_ESCROW_MISMATCH}"
AUDIT_MARKET_SUMS = """
SELECT
    (SELECT coalesce(sum(open_quantity_points), 0) FROM {p}orders
     WHERE side = 'SELL' AND status IN ('OPEN', 'PARTIALLY_FILLED')),
    (SELECT coalesce(sum(quantity_points), 0) FROM {p}trades WHERE status = 'PENDING_PAYMENT')
"""
