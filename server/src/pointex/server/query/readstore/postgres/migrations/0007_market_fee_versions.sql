-- Pointex read store, schema version 7 (PostgreSQL): the version of each market's fee schedule.
--
-- `{p}` is the generation's table prefix, as in 0001. A market keeps the number of its
-- configurations (MarketConfigured events) and the fee schedule's version: that number at
-- the configuration that last changed its buyer's or seller's fee, which an order's fee
-- quote (QuoteOrder) names and PlaceOrder checks. Rows already projected get 0 for both: an
-- older release did not count the configurations, and nothing in the row can tell them. A
-- quote of such a market names version 0, which the command side refuses with
-- FEE_SCHEDULE_CHANGED (stating the version in force), so rebuild the read store
-- (RebuildProjections) after this migration to quote markets configured before it.

ALTER TABLE {p}markets ADD COLUMN configurations bigint NOT NULL DEFAULT 0;

ALTER TABLE {p}markets ADD COLUMN fee_schedule_version bigint NOT NULL DEFAULT 0;
