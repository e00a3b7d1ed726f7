-- Pointex read store, schema version 4 (SQLite): pending points (issues that activate later).
--
-- `{p}` is the generation's table prefix, as in 0001. Rows already projected get 0: an older
-- release cannot project PointsPending or PointsActivated (it passes over them, then stops at
-- the account's next event), so a log holding them must be projected by this release.

ALTER TABLE {p}accounts ADD COLUMN pending_points INTEGER NOT NULL DEFAULT 0;

-- A movement's change of pending points and the account's pending points after it.
ALTER TABLE {p}movements ADD COLUMN pending_delta_points INTEGER NOT NULL DEFAULT 0;
ALTER TABLE {p}movements ADD COLUMN pending_points INTEGER NOT NULL DEFAULT 0;

-- What is left pending of each issue between its PointsPending and its PointsActivated (or
-- the reversal that took the rest back): the issuing merchant, for the activation's
-- notification, and the amount, which activations and reversals are checked against.
CREATE TABLE {p}pending_issues (
    transfer_id              TEXT    NOT NULL PRIMARY KEY,
    account_id               TEXT    NOT NULL,
    counterparty_account_id  TEXT    NOT NULL,
    amount_points            INTEGER NOT NULL,
    memo                     TEXT    NOT NULL,
    position                 INTEGER NOT NULL
) STRICT;
