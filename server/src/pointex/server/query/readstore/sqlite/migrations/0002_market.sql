-- Pointex read store, schema version 2 (SQLite): the market read models.
--
-- Markets, orders, trades, the aggregated order books and the escrow steps in flight (I2).
-- `{p}` is the generation's table prefix, as in 0001. Enums are stored by name without their
-- prefix; an order with status PENDING has its points held but has not reached the market.

-- A market's latest configuration: the serialized pointex.v1.Market.
CREATE TABLE {p}markets (
    market_id            TEXT    NOT NULL PRIMARY KEY,
    currency             TEXT    NOT NULL,
    body                 BLOB    NOT NULL,
    configured_position  INTEGER NOT NULL,
    updated_at_us        INTEGER NOT NULL
) STRICT;

CREATE TABLE {p}orders (
    order_id                   TEXT    NOT NULL PRIMARY KEY,
    market_id                  TEXT    NOT NULL,
    account_id                 TEXT    NOT NULL,
    owner_partner_id           TEXT    NOT NULL,
    side                       TEXT    NOT NULL,
    time_in_force              TEXT    NOT NULL,
    status                     TEXT    NOT NULL,
    quantity_points            INTEGER NOT NULL,
    limit_price_minor          INTEGER NOT NULL,
    currency                   TEXT    NOT NULL,
    open_quantity_points       INTEGER NOT NULL,
    filled_quantity_points     INTEGER NOT NULL,
    settled_quantity_points    INTEGER NOT NULL,
    cancelled_quantity_points  INTEGER NOT NULL,
    client_order_id            TEXT    NOT NULL,
    cancel_reason              TEXT    NOT NULL,
    reject_reason              TEXT    NOT NULL,
    placed_position            INTEGER NOT NULL,
    placed_at_us               INTEGER NOT NULL,
    updated_at_us              INTEGER NOT NULL
) STRICT;

-- ListOrders newest first: of everyone, of one account, of one partner.
CREATE INDEX {p}orders_placed ON {p}orders (placed_position);
CREATE INDEX {p}orders_account ON {p}orders (account_id, placed_position);
CREATE INDEX {p}orders_owner ON {p}orders (owner_partner_id, placed_position);

CREATE TABLE {p}trades (
    trade_id                 TEXT    NOT NULL PRIMARY KEY,
    market_id                TEXT    NOT NULL,
    status                   TEXT    NOT NULL,
    buy_order_id             TEXT    NOT NULL,
    sell_order_id            TEXT    NOT NULL,
    buyer_account_id         TEXT    NOT NULL,
    seller_account_id        TEXT    NOT NULL,
    buyer_owner_partner_id   TEXT    NOT NULL,
    seller_owner_partner_id  TEXT    NOT NULL,
    maker_side               TEXT    NOT NULL,
    quantity_points          INTEGER NOT NULL,
    price_minor              INTEGER NOT NULL,
    currency                 TEXT    NOT NULL,
    notional_minor           INTEGER NOT NULL,
    buyer_fee_minor          INTEGER NOT NULL,
    seller_fee_minor         INTEGER NOT NULL,
    amount_due_minor         INTEGER NOT NULL,
    seller_proceeds_minor    INTEGER NOT NULL,
    payment_deadline_us      INTEGER NOT NULL,
    provider_id              TEXT    NOT NULL,
    payment_id               TEXT    NOT NULL,
    checkout_url             TEXT    NOT NULL,
    cancel_reason            TEXT    NOT NULL,
    refund_required          INTEGER NOT NULL,
    matched_position         INTEGER NOT NULL,
    matched_at_us            INTEGER NOT NULL,
    settled_at_us            INTEGER NOT NULL,
    cancelled_at_us          INTEGER NOT NULL,
    updated_at_us            INTEGER NOT NULL
) STRICT;

-- ListTrades and ListRecentTrades newest first; market statistics over a time window.
CREATE INDEX {p}trades_matched ON {p}trades (matched_position);
CREATE INDEX {p}trades_market ON {p}trades (market_id, matched_position);
CREATE INDEX {p}trades_market_time ON {p}trades (market_id, matched_at_us);
CREATE INDEX {p}trades_buyer ON {p}trades (buyer_account_id, matched_position);
CREATE INDEX {p}trades_seller ON {p}trades (seller_account_id, matched_position);

-- The aggregated book: open quantity and order count of the resting orders at each price.
CREATE TABLE {p}price_levels (
    market_id        TEXT    NOT NULL,
    side             TEXT    NOT NULL,
    price_minor      INTEGER NOT NULL,
    quantity_points  INTEGER NOT NULL,
    order_count      INTEGER NOT NULL,
    PRIMARY KEY (market_id, side, price_minor)
) STRICT, WITHOUT ROWID;

-- Held points that neither a resting SELL order nor a trade pending payment accounts for yet
-- (a hold before its order is placed, a release still to come), or a sale delivered before
-- its trade settled (negative): the steps in flight of I2.
CREATE TABLE {p}escrow (
    process_id     TEXT    NOT NULL PRIMARY KEY,
    account_id     TEXT    NOT NULL,
    amount_points  INTEGER NOT NULL,
    position       INTEGER NOT NULL
) STRICT;
