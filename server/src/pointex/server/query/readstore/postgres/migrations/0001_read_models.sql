-- Pointex read store, schema version 1 (PostgreSQL): the account read models and the
-- checkpoint.
--
-- Every table belongs to one generation of projections: `{p}` is the generation's table
-- prefix (g<n>_), put in by the store. A rebuild creates a new generation from these same
-- files. Read models are derived data: they are checked by CheckInvariants and by a
-- comparison with a rebuild, not by constraints that would stop the projection.

-- The position through which every event is applied, written in the same transaction as the
-- projection changes of each batch.
CREATE TABLE {p}checkpoint (
    id              integer NOT NULL PRIMARY KEY,
    position        bigint  NOT NULL,
    events_applied  bigint  NOT NULL,
    CONSTRAINT {p}checkpoint_one_row CHECK (id = 1),
    CONSTRAINT {p}checkpoint_position CHECK (position >= 0)
);

INSERT INTO {p}checkpoint (id, position, events_applied) VALUES (1, 0, 0);

CREATE TABLE {p}accounts (
    account_id        text    COLLATE "C" NOT NULL PRIMARY KEY,
    kind              text    NOT NULL,
    status            text    NOT NULL,
    owner_partner_id  text    COLLATE "C" NOT NULL,
    display_name      text    NOT NULL,
    available_points  bigint  NOT NULL,
    held_points       bigint  NOT NULL,
    version           bigint  NOT NULL,
    frozen_by_role    text    NOT NULL,
    opened_at_us      bigint  NOT NULL,
    updated_at_us     bigint  NOT NULL
);

-- ListAccounts of one owner, in account_id order. Ids use COLLATE "C": they compare
-- byte-wise, as on SQLite, so both stores list in the same order.
CREATE INDEX {p}accounts_owner ON {p}accounts (owner_partner_id, account_id);

-- Account history: one row per event of an account stream that moves points.
CREATE TABLE {p}movements (
    account_id               text    NOT NULL,
    position                 bigint  NOT NULL,
    recorded_at_us           bigint  NOT NULL,
    account_version          bigint  NOT NULL,
    kind                     text    NOT NULL,
    available_delta_points   bigint  NOT NULL,
    held_delta_points        bigint  NOT NULL,
    available_points         bigint  NOT NULL,
    held_points              bigint  NOT NULL,
    counterparty_account_id  text    NOT NULL,
    transfer_id              text    NOT NULL,
    order_id                 text    NOT NULL,
    trade_id                 text    NOT NULL,
    memo                     text    NOT NULL,
    PRIMARY KEY (account_id, position)
);

-- Notifications in log order; (position, idx) is the cursor, the same in every generation.
CREATE TABLE {p}notifications (
    position          bigint   NOT NULL,
    idx               integer  NOT NULL,
    account_id        text     NOT NULL,
    owner_partner_id  text     NOT NULL,
    kind              text     NOT NULL,
    occurred_at_us    bigint   NOT NULL,
    body              bytea    NOT NULL,
    PRIMARY KEY (position, idx)
);

-- A partner's notifications, in cursor order.
CREATE INDEX {p}notifications_owner ON {p}notifications (owner_partner_id, position, idx);

-- Points debited by a process (transfer, settlement) and not yet credited on the other side.
CREATE TABLE {p}in_flight (
    process_id     text    NOT NULL PRIMARY KEY,
    account_id     text    NOT NULL,
    amount_points  bigint  NOT NULL,
    position       bigint  NOT NULL
);

CREATE TABLE {p}totals (
    id             integer NOT NULL PRIMARY KEY,
    minted_points  bigint  NOT NULL,
    burned_points  bigint  NOT NULL,
    CONSTRAINT {p}totals_one_row CHECK (id = 1)
);

INSERT INTO {p}totals (id, minted_points, burned_points) VALUES (1, 0, 0);
