-- Pointex read store, schema version 6 (SQLite): transfer fees.
--
-- `{p}` is the generation's table prefix, as in 0001. A TransferPoints under a fee schedule
-- (ProgramRules.transfer_fee) debits its fee with its points: the source's TRANSFER_OUT
-- movement states the fee it includes. The rules in force keep the version of their fee
-- schedule: the rules' version at which `transfer_fee` last changed, which a fee quote names.
-- Rows already projected get 0: an older release could not set a fee, so no movement paid
-- one and no rules carried one.

ALTER TABLE {p}movements ADD COLUMN fee_points INTEGER NOT NULL DEFAULT 0;

ALTER TABLE {p}program_rules ADD COLUMN fee_schedule_version INTEGER NOT NULL DEFAULT 0;
