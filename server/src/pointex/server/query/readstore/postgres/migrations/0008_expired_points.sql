-- Pointex read store, schema version 8 (PostgreSQL): points that lapsed under program expiry.
--
-- `{p}` is the generation's table prefix, as in 0001. A member's points that lapse under the
-- program's expiry policy (PointsExpired) leave circulation as burned points do; the totals
-- count them apart from burns, and conservation (I1) subtracts both from the minted points.
-- The row already there gets 0: an older release did not project PointsExpired (it passed
-- over it), so a read store whose log already holds one must be rebuilt.

ALTER TABLE {p}totals ADD COLUMN expired_points bigint NOT NULL DEFAULT 0;
