-- Pointex read store, schema version 1 (SQLite): the account read models and the checkpoint.
--
-- Every table belongs to one generation of projections: `{p}` is the generation's table
-- prefix (g<n>_), put in by the store. A rebuild creates a new generation from these same
-- files. Read models are derived data: they are checked by CheckInvariants and by a
-- comparison with a rebuild, not by constraints that would stop the projection.

-- The position through which every event is applied, written in the same transaction as the
-- projection changes of each batch.
CREATE TABLE {p}checkpoint (
    id              INTEGER NOT NULL PRIMARY KEY,
    position        INTEGER NOT NULL,
    events_applied  INTEGER NOT NULL,
    CONSTRAINT {p}checkpoint_one_row CHECK (id = 1),
    CONSTRAINT {p}checkpoint_position CHECK (position >= 0)
) STRICT;

INSERT INTO {p}checkpoint (id, position, events_applied) VALUES (1, 0, 0);

CREATE TABLE {p}accounts (
    account_id        TEXT    NOT NULL PRIMARY KEY,
    kind              TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    owner_partner_id  TEXT    NOT NULL,
    display_name      TEXT    NOT NULL,
    available_points  INTEGER NOT NULL,
    held_points       INTEGER NOT NULL,
    version           INTEGER NOT NULL,
    frozen_by_role    TEXT    NOT NULL,
    opened_at_us      INTEGER NOT NULL,
    updated_at_us     INTEGER NOT NULL
) STRICT;

-- ListAccounts of one owner, in account_id order.
CREATE INDEX {p}accounts_owner ON {p}accounts (owner_partner_id, account_id);

-- Account history: one row per event of an account stream that moves points.
CREATE TABLE {p}movements (
    account_id               TEXT    NOT NULL,
    position                 INTEGER NOT NULL,
    recorded_at_us           INTEGER NOT NULL,
    account_version          INTEGER NOT NULL,
    kind                     TEXT    NOT NULL,
    available_delta_points   INTEGER NOT NULL,
    held_delta_points        INTEGER NOT NULL,
    available_points         INTEGER NOT NULL,
    held_points              INTEGER NOT NULL,
    counterparty_account_id  TEXT    NOT NULL,
    transfer_id              TEXT    NOT NULL,
    order_id                 TEXT    NOT NULL,
    trade_id                 TEXT    NOT NULL,
    memo                     TEXT    NOT NULL,
    PRIMARY KEY (account_id, position)
) STRICT, WITHOUT ROWID;

-- Notifications in log order; (position, idx) is the cursor, the same in every generation.
CREATE TABLE {p}notifications (
    position          INTEGER NOT NULL,
    idx               INTEGER NOT NULL,
    account_id        TEXT    NOT NULL,
    owner_partner_id  TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    occurred_at_us    INTEGER NOT NULL,
    body              BLOB    NOT NULL,
    PRIMARY KEY (position, idx)
) STRICT;

-- A partner's notifications, in cursor order.
CREATE INDEX {p}notifications_owner ON {p}notifications (owner_partner_id, position, idx);

-- Points debited by a process (transfer, settlement) and not yet credited on the other side.
CREATE TABLE {p}in_flight (
    process_id     TEXT    NOT NULL PRIMARY KEY,
    account_id     TEXT    NOT NULL,
    amount_points  INTEGER NOT NULL,
    position       INTEGER NOT NULL
) STRICT;

CREATE TABLE {p}totals (
    id             INTEGER NOT NULL PRIMARY KEY,
    minted_points  INTEGER NOT NULL,
    burned_points  INTEGER NOT NULL,
    CONSTRAINT {p}totals_one_row CHECK (id = 1)
) STRICT;

INSERT INTO {p}totals (id, minted_points, burned_points) VALUES (1, 0, 0);
