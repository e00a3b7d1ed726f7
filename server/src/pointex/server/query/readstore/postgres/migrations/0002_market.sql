-- Pointex read store, schema version 2 (PostgreSQL): the market read models.
--
-- Markets, orders, trades, the aggregated order books and the escrow steps in flight (I2).
-- `{p}` is the generation's table prefix, as in 0001. Market ids use COLLATE "C" so that
-- ListMarkets orders them byte-wise, as on SQLite. Enums are stored by name without their
-- prefix; an order with status PENDING has its points held but has not reached the market.

-- A market's latest configuration: the serialized pointex.v1.Market.
CREATE TABLE {p}markets (
    market_id            text    COLLATE "C" NOT NULL PRIMARY KEY,
    currency             text    NOT NULL,
    body                 bytea   NOT NULL,
    configured_position  bigint  NOT NULL,
    updated_at_us        bigint  NOT NULL
);

CREATE TABLE {p}orders (
    order_id                   text    NOT NULL PRIMARY KEY,
    market_id                  text    NOT NULL,
    account_id                 text    NOT NULL,
    owner_partner_id           text    NOT NULL,
    side                       text    NOT NULL,
    time_in_force              text    NOT NULL,
    status                     text    NOT NULL,
    quantity_points            bigint  NOT NULL,
    limit_price_minor          bigint  NOT NULL,
    currency                   text    NOT NULL,
    open_quantity_points       bigint  NOT NULL,
    filled_quantity_points     bigint  NOT NULL,
    settled_quantity_points    bigint  NOT NULL,
    cancelled_quantity_points  bigint  NOT NULL,
    client_order_id            text    NOT NULL,
    cancel_reason              text    NOT NULL,
    reject_reason              text    NOT NULL,
    placed_position            bigint  NOT NULL,
    placed_at_us               bigint  NOT NULL,
    updated_at_us              bigint  NOT NULL
);

-- ListOrders newest first: of everyone, of one account, of one partner.
CREATE INDEX {p}orders_placed ON {p}orders (placed_position);
CREATE INDEX {p}orders_account ON {p}orders (account_id, placed_position);
CREATE INDEX {p}orders_owner ON {p}orders (owner_partner_id, placed_position);

CREATE TABLE {p}trades (
    trade_id                 text    NOT NULL PRIMARY KEY,
    market_id                text    NOT NULL,
    status                   text    NOT NULL,
    buy_order_id             text    NOT NULL,
    sell_order_id            text    NOT NULL,
    buyer_account_id         text    NOT NULL,
    seller_account_id        text    NOT NULL,
    buyer_owner_partner_id   text    NOT NULL,
    seller_owner_partner_id  text    NOT NULL,
    maker_side               text    NOT NULL,
    quantity_points          bigint  NOT NULL,
    price_minor              bigint  NOT NULL,
    currency                 text    NOT NULL,
    notional_minor           bigint  NOT NULL,
    buyer_fee_minor          bigint  NOT NULL,
    seller_fee_minor         bigint  NOT NULL,
    amount_due_minor         bigint  NOT NULL,
    seller_proceeds_minor    bigint  NOT NULL,
    payment_deadline_us      bigint  NOT NULL,
    provider_id              text    NOT NULL,
    payment_id               text    NOT NULL,
    checkout_url             text    NOT NULL,
    cancel_reason            text    NOT NULL,
    refund_required          boolean NOT NULL,
    matched_position         bigint  NOT NULL,
    matched_at_us            bigint  NOT NULL,
    settled_at_us            bigint  NOT NULL,
    cancelled_at_us          bigint  NOT NULL,
    updated_at_us            bigint  NOT NULL
);

-- ListTrades and ListRecentTrades newest first; market statistics over a time window.
CREATE INDEX {p}trades_matched ON {p}trades (matched_position);
CREATE INDEX {p}trades_market ON {p}trades (market_id, matched_position);
CREATE INDEX {p}trades_market_time ON {p}trades (market_id, matched_at_us);
CREATE INDEX {p}trades_buyer ON {p}trades (buyer_account_id, matched_position);
CREATE INDEX {p}trades_seller ON {p}trades (seller_account_id, matched_position);

-- The aggregated book: open quantity and order count of the resting orders at each price.
CREATE TABLE {p}price_levels (
    market_id        text    NOT NULL,
    side             text    NOT NULL,
    price_minor      bigint  NOT NULL,
    quantity_points  bigint  NOT NULL,
    order_count      bigint  NOT NULL,
    PRIMARY KEY (market_id, side, price_minor)
);

-- Held points that neither a resting SELL order nor a trade pending payment accounts for yet
-- (a hold before its order is placed, a release still to come), or a sale delivered before
-- its trade settled (negative): the steps in flight of I2.
CREATE TABLE {p}escrow (
    process_id     text    NOT NULL PRIMARY KEY,
    account_id     text    NOT NULL,
    amount_points  bigint  NOT NULL,
    position       bigint  NOT NULL
);
