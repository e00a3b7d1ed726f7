-- Pointex read store, schema version 3 (PostgreSQL): account tiers and the program's rules.
--
-- `{p}` is the generation's table prefix, as in 0001. Accounts already projected get the empty
-- tier: an older release passed over AccountTierSet, so a log that holds one needs a rebuild.

ALTER TABLE {p}accounts ADD COLUMN tier text NOT NULL DEFAULT '';

-- The rules in force: the serialized pointex.v1.ProgramRules of the latest ProgramRulesSet,
-- its version (the event's version on program-main), when it was recorded and its position.
-- No row before the first change (version 0).
CREATE TABLE {p}program_rules (
    id         integer NOT NULL PRIMARY KEY,
    version    bigint  NOT NULL,
    body       bytea   NOT NULL,
    set_at_us  bigint  NOT NULL,
    position   bigint  NOT NULL,
    CONSTRAINT {p}program_rules_one_row CHECK (id = 1)
);
