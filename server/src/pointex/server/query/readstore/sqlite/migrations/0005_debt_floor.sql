-- Pointex read store, schema version 5 (SQLite): the accounts' debt floor.
--
-- `{p}` is the generation's table prefix, as in 0001. A reversal decided under the program's
-- debt policy (ProgramRules.reversal_debt_max_points) may take an account's available points
-- below zero; its PointsDebited states the lowest balance the policy allowed then
-- (`debt_floor_points`, negative). The account keeps that floor while it stays in debt, so
-- that CheckInvariants accepts a negative balance only down to it; 0 otherwise. Rows already
-- projected get 0: an older release stops at such a debit (its balance is negative), so no
-- projected row is in debt.

ALTER TABLE {p}accounts ADD COLUMN debt_floor_points INTEGER NOT NULL DEFAULT 0
    CONSTRAINT {p}accounts_debt_floor CHECK (debt_floor_points <= 0);
